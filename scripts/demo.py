#!/usr/bin/env python3
"""`make demo`: relance doing its job in one command, in a few minutes (issue 15).

    scripts/demo.py                              # 2,000 customers, 10,000 invoices, 90 days in 5 minutes
    scripts/demo.py --customers 200 --days 20    # a smaller one: 20 days in about a minute
    scripts/demo.py --minutes 10                 # the same 90 days, at half the speed
    make demo DEMO_ARGS="--customers 500"        # options through make

It brings up, on free ports and in a temporary folder, a broker and a PostgreSQL of its own
(never the shared ones of `make up` on 19092 and 54329, which tests use), the mock Postmark
(scripts/mock_postmark.py) writing every email it accepts to .local/demo/mail, and relance's
four services (ingestor, scheduler, sender, tracker), all on one simulated clock
(`runtime.clock`: 90 simulated days in 5 real minutes by default). It then runs the billing
simulator (scripts/simulate_billing.py, as a library): a portfolio published through the real
contracts, and customers who open, click, pay, promise and dispute as reminders arrive, with a
live line (simulated date, events, reminders by step, payments, opens, clicks, actions).

When the period is over it stops the scheduler and the sender, lets the ingestor apply the last
billing events, stops the tracker and the ingestor, prints the report (scripts/demo_report.py),
writes it as an HTML page with charts (.local/demo/report.html), says where the rendered emails
are, and stops everything it started. Exit status 0 when the demo ran to its end; 1 when it
could not be carried out; 130 when interrupted (Ctrl-C stops it cleanly and still prints the
report of what happened so far; a second Ctrl-C leaves at once).

The start-up helpers (the throwaway PostgreSQL and tansu broker, the mock, the service
processes that die with this script) are scripts/chaos.py's, imported as a module.
docs/simulator.md describes the simulator, the mock, the report and this sequence.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import chaos  # noqa: E402  (the start-up helpers: Processes, Postgres, Broker, Mock, Instance)
import simulate_billing as sim  # noqa: E402

UTC = timezone.utc
TENANT = "demo"
POSTMARK_TOKEN = "demo-postmark-token"
WEBHOOK_USER = "demo"
WEBHOOK_PASSWORD = "demo-webhook-password-0123456789"
# One instance of each service, in the order they are stopped at the end: the scheduler first
# (no new reminders once no customer answers), the sender, then the tracker and the ingestor
# once the last billing events are applied.
SERVICES = ("scheduler", "sender", "tracker", "ingestor")
DEFAULT_OUT_DIR = ROOT / ".local" / "demo"


# ==============================================================================================
# The plan: sizes, the period and the clock (pure, tested in scripts/tests/test_demo.py)


@dataclass(frozen=True)
class Plan:
    customers: int
    invoices: int
    days: float
    minutes: float
    # Invoices are issued from start + issue_from to start + issue_to days.
    issue_from: float
    issue_to: float

    @property
    def speed(self) -> float:
        """Simulated seconds per real second: the period in `minutes` real minutes."""
        return self.days * 86400.0 / (self.minutes * 60.0)


def issue_window(days: float) -> tuple[float, float]:
    """The simulator's default window is 25 days before the start to 65 after, for 90 days:
    invoices issued before the start are the backlog relance finds on its first day, and the
    last ones still come due inside the period. Shorter periods keep the backlog and issue new
    invoices over their first half at least, so that reminders still go out."""
    return -25.0, max(days - 25.0, days / 2.0)


# Simulated seconds per real second by default: 90 days in 5 minutes.
DEFAULT_SPEED = 90 * 86400.0 / 300.0


def make_plan(customers: int, invoices: int | None, days: float, minutes: float | None) -> Plan:
    """Checks the sizes; about five invoices a customer when `invoices` is not given, and the
    default speed (90 days in 5 minutes, at least half a minute) when `minutes` is not."""
    if minutes is None:
        minutes = max(days * 86400.0 / DEFAULT_SPEED / 60.0, 0.5)
    if customers < 1:
        raise ValueError("--customers must be at least 1")
    if invoices is None:
        invoices = customers * 5
    if invoices < 1:
        raise ValueError("--invoices must be at least 1")
    if not days > 0 or days > 3650:
        raise ValueError("--days must be between 0 and 3650")
    if not minutes > 0:
        raise ValueError("--minutes must be positive")
    speed = days * 86400.0 / (minutes * 60.0)
    if speed > 200_000:
        # Beyond this a second of real time is more than two simulated days: the services'
        # polling and the customers' HTTP round trips can no longer keep up (docs/simulator.md).
        raise ValueError(f"{days:g} days in {minutes:g} minutes is x{speed:,.0f}: give it more --minutes "
                         f"(at least {days * 86400.0 / 200_000 / 60:.1f})")
    issue_from, issue_to = issue_window(days)
    return Plan(customers, invoices, days, minutes, issue_from, issue_to)


def period_start(today: date) -> datetime:
    """The period starts today at midnight UTC; the simulated clock shows it at the epoch."""
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def make_clock(start: datetime, speed: float, real_now: float, lead_seconds: float) -> sim.SimClock:
    """The clock every process shares: `start` at an epoch `lead_seconds` from now (a whole
    second, so its RFC 3339 form is exact), time for everything to be up before it runs."""
    epoch = datetime.fromtimestamp(math.ceil(real_now + lead_seconds), UTC)
    return sim.SimClock(start=start, epoch=epoch, speed=speed)


@dataclass(frozen=True)
class Endpoints:
    """Where everything listens, for the services' settings."""

    pg_port: int
    bootstrap: str
    mock_url: str
    tracker_public_port: int
    scheduler_admin_port: int
    sms_folder: Path
    config_dir: Path


def service_env(base: Mapping[str, str], service: str, ops_port: int, clock: sim.SimClock,
                endpoints: Endpoints) -> dict[str, str]:
    """The environment of one service: the caller's, without any RELANCE_* setting of its own
    (so a shell set up for `make run` cannot point the demo at the shared broker), plus the
    overrides of config/test.toml that make the demo: its own broker and database, the shared
    simulated clock, email through the mock Postmark, SMS to files, the tracker's webhook
    credentials and one trusted proxy hop (each simulated customer has an address of its own)."""
    env = {key: value for key, value in base.items() if not key.startswith("RELANCE_")}
    env.update({
        "RELANCE_ENV": "test",
        "RELANCE_CONFIG_DIR": str(endpoints.config_dir),
        "RELANCE__TELEMETRY__LOG_LEVEL": "info,sqlx=warn,librdkafka=warn",
        "RELANCE__TELEMETRY__LOG_FORMAT": "json",
        "RELANCE__DATABASE__HOST": "127.0.0.1",
        "RELANCE__DATABASE__PORT": str(endpoints.pg_port),
        "RELANCE__DATABASE__DATABASE_NAME": "relance",
        "RELANCE__DATABASE__USERNAME": "postgres",
        # Migrations ran once before the services started.
        "RELANCE__DATABASE__MIGRATE_ON_START": "false",
        "RELANCE__KAFKA__BOOTSTRAP_SERVERS": endpoints.bootstrap,
        "RELANCE__RUNTIME__CLOCK__SPEED": repr(clock.speed),
        "RELANCE__RUNTIME__CLOCK__START": sim.rfc3339(clock.start),
        "RELANCE__RUNTIME__CLOCK__EPOCH": sim.rfc3339(clock.epoch),
        "RELANCE__LINKS__PUBLIC_BASE_URL": f"http://127.0.0.1:{endpoints.tracker_public_port}",
        f"RELANCE__{service.upper()}__OPS_LISTEN_ADDRESS": f"127.0.0.1:{ops_port}",
    })
    if service == "scheduler":
        env["RELANCE__SCHEDULER__ADMIN_LISTEN_ADDRESS"] = f"127.0.0.1:{endpoints.scheduler_admin_port}"
    elif service == "sender":
        env.update({
            "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER": "postmark",
            "RELANCE__SENDER__PROVIDERS__POSTMARK__KIND": "postmark",
            "RELANCE__SENDER__PROVIDERS__POSTMARK__BASE_URL": endpoints.mock_url,
            "RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN": POSTMARK_TOKEN,
            # A loaded 2-core machine: room for the mock writing a batch of files; the lease at
            # least twice the timeout plus a second (config/test.toml).
            "RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS": "3000",
            "RELANCE__SENDER__LEASE_MS": "10000",
            "RELANCE__SENDER__PROVIDERS__FILE__FOLDER": str(endpoints.sms_folder),
        })
    elif service == "tracker":
        env.update({
            "RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS": f"127.0.0.1:{endpoints.tracker_public_port}",
            "RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME": WEBHOOK_USER,
            "RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD": WEBHOOK_PASSWORD,
            "RELANCE__TRACKER__TRUSTED_PROXY_HOPS": "1",
        })
    return env


def find_binaries(build: str, target: Path) -> tuple[str, Path] | None:
    """The build to run: `release` or `debug` as asked, or (auto) release when all four
    binaries are there, else debug; None when the build asked for is incomplete."""
    for profile in (["release", "debug"] if build == "auto" else [build]):
        folder = target / profile
        if all((folder / name).is_file() for name in chaos.BINARIES):
            return profile, folder
    return None


def duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def count_files(folder: Path, suffix: str) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(suffix))
    except OSError:
        return 0


def closing_lines(out_dir: Path, html: Path, mail: Path, sms: Path, ledger: Path, logs: Path,
                  emails: int, sms_count: int) -> list[str]:
    """What the demo left behind, and where."""
    lines = [f"Report (HTML, open it in a browser): {html}"]
    if emails:
        lines.append(f"Rendered emails: {mail} ({emails:,} messages: <send id>.eml opens in any mail client, "
                     f"<send id>.html in a browser)")
    else:
        lines.append(f"Rendered emails: none were sent ({mail} is empty)")
    if sms_count:
        lines.append(f"SMS: {sms} ({sms_count:,} files)")
    lines.append(f"Simulator's ledger: {ledger}; logs of every process: {logs}")
    lines.append(f"Everything is in {out_dir}; the next demo replaces it.")
    return lines


# ==============================================================================================
# The run


def log(text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    # On a terminal the simulator redraws its live line; start ours on a clean line.
    prefix = "\r\x1b[2K" if sys.stderr.isatty() else ""
    print(f"{prefix}[demo {stamp}] {text}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """A second Ctrl-C: leave at once (everything started is still stopped)."""


class DemoMock(chaos.Mock):
    """The mock Postmark without faults, writing every accepted email to the demo's folder."""

    def __init__(self, logs: Path, python: str, processes: chaos.Processes, clock: sim.SimClock, seed: int,
                 out_dir: Path) -> None:
        super().__init__(logs, python, processes, clock, seed, faults={})  # type: ignore[arg-type]
        self.out_dir = out_dir

    def start(self) -> None:
        argv = [self.python, str(SCRIPTS / "mock_postmark.py"), "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--server-token", POSTMARK_TOKEN,
                "--out-dir", str(self.out_dir), "--max-bodies", "20000", "--seed", str(self.seed),
                "--clock-speed", repr(self.clock.speed), "--clock-start", sim.rfc3339(self.clock.start),
                "--clock-epoch", sim.rfc3339(self.clock.epoch)]
        self.child = self.processes.spawn(argv, self.log)
        if not chaos.wait_until(lambda: chaos.http_json("GET", f"{self.admin_url}/_mock/health")[0] == 200, 20):
            raise RuntimeError(f"the mock Postmark did not start; see {self.log}")

    def terminate(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait(timeout=10)


class Demo:
    def __init__(self, args: argparse.Namespace, plan: Plan, build: str, source: Path) -> None:
        self.args = args
        self.plan = plan
        self.build = build
        self.out_dir: Path = args.out_dir.resolve()
        self.mail = self.out_dir / "mail"
        self.sms = self.out_dir / "sms"
        self.logs = self.out_dir / "logs"
        self.html = self.out_dir / "report.html"
        self.ledger = self.out_dir / "ledger.json"
        self.processes = chaos.Processes()
        self.interrupted = threading.Event()
        self.restarts: dict[str, int] = {}
        self.sim_error: str | None = None
        self.simulation: sim.Simulation | None = None
        self.instances: dict[str, chaos.Instance] = {}
        self.exit_codes: dict[str, int | None] = {}
        # Only what an earlier demo left: this folder belongs to the demo.
        for path in (self.mail, self.sms, self.logs):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.html, self.ledger):
            path.unlink(missing_ok=True)
        for path in (self.mail, self.sms, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="relance-demo-", dir=args.work_dir))
        self.root.chmod(0o755)
        # A copy: another session may rebuild the binaries while the demo runs.
        self.bin = self.root / "bin"
        self.bin.mkdir()
        for name in chaos.BINARIES:
            shutil.copy2(source / name, self.bin / name)
        self.source = source

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        p = self.plan
        log(f"{self.build} build from {self.source}; output in {self.out_dir}")
        self.pg = chaos.Postgres(self.root, Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin")),
                                 self.processes)
        self.pg.init()
        self.pg.start()
        self.pg.create_database("relance")
        binary = chaos.tansu_binary()
        if not binary.is_file():
            raise RuntimeError(f"the tansu broker is not installed ({binary}): run scripts/install-deps.sh")
        self.broker = chaos.Broker(self.logs, binary, self.processes)
        self.broker.start()
        log(f"PostgreSQL on 127.0.0.1:{self.pg.port}, tansu broker on {self.broker.bootstrap} "
            f"({len(chaos.TOPICS)} topics of {chaos.PARTITIONS} partitions)")
        lead = 25.0 if self.build == "debug" else 15.0
        start = period_start(self.args.start or datetime.now(UTC).date())
        self.clock = make_clock(start, p.speed, time.time(), lead)
        self.mock = DemoMock(self.logs, sys.executable, self.processes, self.clock, self.args.seed, self.mail)
        self.mock.start()
        log(f"mock Postmark on {self.mock.url}, writing the emails to {self.mail}")
        self.endpoints = Endpoints(pg_port=self.pg.port, bootstrap=self.broker.bootstrap, mock_url=self.mock.url,
                                   tracker_public_port=chaos.free_port(), scheduler_admin_port=chaos.free_port(),
                                   sms_folder=self.sms, config_dir=ROOT / "config")
        for service in SERVICES:
            port = chaos.free_port()
            self.instances[service] = chaos.Instance(service, self.bin / service,
                                                     service_env(os.environ, service, port, self.clock, self.endpoints),
                                                     port, self.logs, self.processes)
        migrate = subprocess.run([str(self.bin / "ingestor"), "migrate"], env=self.instances["ingestor"].env,
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
        if migrate.returncode != 0:
            raise RuntimeError(f"migrations failed: {migrate.stdout}{migrate.stderr}")
        for instance in self.instances.values():
            instance.start()
        if not chaos.wait_until(lambda: all(i.ready() for i in self.instances.values()), 90, 0.5):
            states = {name: i.readiness() for name, i in self.instances.items()}
            raise RuntimeError(f"the services are not ready: {states}; see {self.logs}")
        log(f"ingestor, scheduler, sender and tracker ready (ops on "
            f"{', '.join(f'{n} :{i.ops_port}' for n, i in self.instances.items())}; tracker pages on "
            f":{self.endpoints.tracker_public_port}, admin API on :{self.endpoints.scheduler_admin_port})")

    def build_simulation(self) -> None:
        p = self.plan
        settings = sim.PortfolioSettings(seed=self.args.seed, tenant=TENANT, customers=p.customers,
                                         invoices=p.invoices, start=self.clock.start, days=p.days,
                                         issue_from_days=p.issue_from, issue_to_days=p.issue_to)
        portfolio = sim.build_portfolio(settings)
        kafka = sim.KafkaSettings(self.broker.bootstrap)
        topics = sim.Topics()
        options = sim.RunOptions(
            tenant_domain=TENANT,
            tracker=sim.TrackerClient(f"http://127.0.0.1:{self.endpoints.tracker_public_port}", WEBHOOK_USER,
                                      WEBHOOK_PASSWORD),
            mailbox=sim.MockMailbox(self.mock.admin_url),
            admin=sim.AdminClient(f"http://127.0.0.1:{self.endpoints.scheduler_admin_port}", chaos.admin_token()),
            progress_seconds=0.5,
        )
        reader = sim.EventsReader(kafka, [topics.events, topics.tasks], f"relance-demo-simulator-{os.getpid()}")
        self.simulation = sim.Simulation(portfolio, self.clock, sim.KafkaPublisher(kafka), topics, options, reader,
                                         sim.ProgressPrinter())
        history = sum(1 for invoice in portfolio.invoices if invoice.history)
        personas = ", ".join(f"{k} {v}" for k, v in Counter(c.persona for c in portfolio.customers).most_common())
        log(f"Portfolio: {p.customers:,} customers ({personas}) in "
            f"{len({c.timezone for c in portfolio.customers})} time zones, {p.invoices:,} invoices "
            f"(+{history:,} paid before the period)")
        log(f"Clock x{p.speed:,.0f}: {p.days:g} simulated days from {portfolio.start:%Y-%m-%d} to "
            f"{portfolio.end:%Y-%m-%d} in {p.minutes:.1f} real minutes, starting at {self.clock.epoch:%H:%M:%S} UTC")
        sim.write_ledger(self.ledger, self.simulation, self.clock, finished=False)

    # -- the period ----------------------------------------------------------------------------

    def run_simulation(self) -> None:
        assert self.simulation is not None
        try:
            self.simulation.run()
        except Exception:  # noqa: BLE001 (reported by the main thread)
            self.sim_error = traceback.format_exc()

    def simulate(self) -> None:
        assert self.simulation is not None
        wait = self.clock.epoch.timestamp() - time.time()
        if wait > 0:
            log(f"Simulated time starts in {wait:.0f} s")
            time.sleep(wait)
        self.started = time.time()
        thread = threading.Thread(target=self.run_simulation, name="simulation", daemon=True)
        thread.start()
        while thread.is_alive():
            self.watch_crashes()
            thread.join(0.5)
        if self.sim_error:
            raise RuntimeError(f"the simulator failed:\n{self.sim_error}")
        log(f"Period {'interrupted' if self.interrupted.is_set() else 'over'} after "
            f"{duration(time.time() - self.started)}")

    def watch_crashes(self) -> None:
        """A service that exits by itself is restarted, as Kubernetes would, and counted."""
        for name, instance in self.instances.items():
            if instance.crashed():
                code = instance.child.returncode if instance.child else None
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log(f"{name} exited by itself (status {code}); restarting it (see {instance.log})")
                instance.incarnations[-1].ended = time.time()
                instance.start()

    # -- the end -------------------------------------------------------------------------------

    def finish_simulation(self) -> None:
        """The simulator's records flushed, its consumer closed, the ledger written."""
        if self.simulation is None:
            return
        unflushed = self.simulation.shutdown(timeout=30)
        failed = getattr(self.simulation.publisher, "failed", 0)
        # The producer goes now, not when the broker stops under it (librdkafka would log that).
        if hasattr(self.simulation.publisher, "producer"):
            self.simulation.publisher.producer = None
        if unflushed or failed:
            log(f"Warning: {failed} billing records failed and {unflushed} were not acknowledged")
        sim.write_ledger(self.ledger, self.simulation, self.clock,
                         finished=not self.simulation.stop_requested.is_set())

    def applied(self) -> int:
        import psycopg

        with psycopg.connect(self.pg.dsn(), autocommit=True, connect_timeout=5) as connection:
            row = connection.execute("SELECT count(*) FROM processed_events WHERE consumer = 'ingestor' AND tenant = %s",
                                     (TENANT,)).fetchone()
            return int(row[0]) if row else 0

    def stop_senders(self) -> None:
        """The scheduler and the sender first, as soon as the period is over: on a fast clock
        every real second they keep running adds simulated hours of reminders no customer
        answers any more. SIGTERM each: the clean shutdown of docs/operations.md."""
        for name in ("scheduler", "sender"):
            self.exit_codes[name] = self.instances[name].terminate()

    def stop_services(self) -> None:
        """Once the simulator's records are flushed: the ingestor applies what it published
        last (15 s at most), then the tracker and the ingestor stop."""
        published = sum(self.simulation.counters.published.values()) if self.simulation else 0
        try:
            caught_up = chaos.wait_until(lambda: self.applied() >= published, 15, 0.5)
            applied = self.applied()
        except Exception as error:  # noqa: BLE001 (the report says what it can)
            caught_up, applied = False, -1
            log(f"Could not count the applied events: {error}")
        if not caught_up:
            log(f"The ingestor applied {applied:,} of the {published:,} billing events published; the report "
                "reflects those")
        for name in ("tracker", "ingestor"):
            self.exit_codes[name] = self.instances[name].terminate()
        unclean = {name: code for name, code in self.exit_codes.items() if code != 0}
        log("Services stopped" + (f"; exit status other than 0: {unclean}" if unclean else " cleanly (exit 0)"))

    def report(self) -> int:
        import demo_report

        print(file=sys.stderr)
        code = demo_report.main(["--dsn", self.pg.dsn(), "--tenant", TENANT, "--mock-url", self.mock.admin_url,
                                 "--ledger", str(self.ledger), "--html", str(self.html)])
        sys.stdout.flush()
        return code

    def closing(self) -> None:
        emails = count_files(self.mail, ".eml")
        sms_count = sum(1 for path in self.sms.rglob("*") if path.is_file()) if self.sms.is_dir() else 0
        lines = closing_lines(self.out_dir, self.html, self.mail, self.sms, self.ledger, self.logs, emails, sms_count)
        if self.restarts:
            lines.append(f"Services restarted after exiting by themselves: {self.restarts}")
        print("\n" + "\n".join(lines))

    def cleanup(self) -> None:
        """Stops whatever is still running, by process id: the services (if an error cut the
        run short), the mock, PostgreSQL, the broker; then deletes the temporary folder (the
        database) unless --keep."""
        if self.simulation is not None:
            self.simulation.stop_requested.set()
            if self.simulation.pool is not None:
                self.simulation.pool.shutdown(wait=False, cancel_futures=True)
        for name, instance in self.instances.items():
            if instance.alive():
                self.exit_codes.setdefault(name, instance.terminate(timeout=10))
        if hasattr(self, "mock"):
            self.mock.terminate()
        if hasattr(self, "pg"):
            self.pg.stop("fast")
            if self.pg.log.exists():
                shutil.copy2(self.pg.log, self.logs / "postgres.log")
        if hasattr(self, "broker") and self.broker.child is not None and self.broker.child.poll() is None:
            self.broker.child.send_signal(signal.SIGTERM)
            try:
                self.broker.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
        self.processes.kill_all()
        if self.args.keep:
            shutil.rmtree(self.bin, ignore_errors=True)
            log(f"Database folder kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# ==============================================================================================
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000, help="customers in the portfolio (default 2,000)")
    parser.add_argument("--invoices", type=int, default=None,
                        help="invoices issued around the period (default five a customer: 10,000)")
    parser.add_argument("--days", type=float, default=90.0, help="simulated days (default 90)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="real minutes the simulated period takes (default 5 for 90 days, less for fewer "
                             "days: x25,920; the clock's speed follows)")
    parser.add_argument("--seed", type=int, default=42, help="the same seed gives the same portfolio (default 42)")
    parser.add_argument("--start", type=date.fromisoformat, default=None,
                        help="first simulated day, YYYY-MM-DD (default today)")
    parser.add_argument("--build", choices=["auto", "release", "debug"], default="auto",
                        help="which build of the services (auto: release when present, else debug)")
    parser.add_argument("--target-dir", type=Path, default=None,
                        help="cargo's target folder (default $CARGO_TARGET_DIR or ~/.cache/relance/target)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where the report, the emails, the ledger and the logs go (default .local/demo)")
    parser.add_argument("--work-dir", default=None, help="parent of the temporary folder of the database")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (the database) at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = make_plan(args.customers, args.invoices, args.days, args.minutes)
    except ValueError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    found = find_binaries(args.build, args.target_dir or chaos.target_dir())
    if found is None:
        print(f"demo: no {'' if args.build == 'auto' else args.build + ' '}build of {', '.join(chaos.BINARIES)} in "
              f"{args.target_dir or chaos.target_dir()}: run `make demo` (it builds them), or "
              f"`cargo build --release --workspace --bins` first", file=sys.stderr)
        return 1
    build, source = found
    started = time.time()
    demo = Demo(args, plan, build, source)

    def stop(signum: int, _frame: Any) -> None:
        if demo.interrupted.is_set():
            raise Interrupted()
        demo.interrupted.set()
        log("Stopping (Ctrl-C again to leave at once, without the report)")
        if demo.simulation is not None:
            demo.simulation.stop_requested.set()
        else:
            raise Interrupted()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 1
    try:
        demo.setup()
        demo.build_simulation()
        demo.simulate()
        demo.stop_senders()
        demo.finish_simulation()
        demo.stop_services()
        report_code = demo.report()
        demo.closing()
        if report_code != 0:
            code = 1
        else:
            code = 130 if demo.interrupted.is_set() else 0
    except Interrupted:
        log("Interrupted.")
        code = 130
    except Exception:  # noqa: BLE001
        log("The demo could not be carried out:\n" + traceback.format_exc() + f"Logs: {demo.logs}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.cleanup()
        log(f"Everything the demo started is stopped ({duration(time.time() - started)} in all).")
    return code


if __name__ == "__main__":
    sys.exit(main())
