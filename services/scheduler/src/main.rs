use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    relance_runtime::main::<relance_scheduler::SchedulerService>().await
}
