//! Human or machine? Opens and clicks are noisy, and not all in the same direction: some
//! software fetches when a person reads (a mail client, a webmail image proxy), some fetches
//! whether or not anyone reads (Apple Mail Privacy Protection), and security scanners follow
//! every link of a message. relance counts only human interactions in its rates and keeps
//! machine ones apart, with the reason. No dunning decision is ever based on an open.
//!
//! The heuristics, in order (the first that matches names the reason):
//!
//! 1. `provider_flag`: the provider says so (SendGrid's `sg_machine_open`).
//! 2. `head_request`: a HEAD request. Browsers and mail clients fetch images and follow links
//!    with GET; HEAD is how link checkers look without fetching (RFC 9110, section 9.3.2).
//! 3. `no_user_agent`: no user agent at all.
//! 4. The user agent, by the rules of [`AGENT_RULES`], each with the public source it rests on:
//!    - a mail client (Outlook for Windows) or a webmail image proxy that fetches the images
//!      when a person opens the message (Gmail, Yahoo) is a person for an open;
//!    - `prefetch`: Apple Mail Privacy Protection and Gmail's prefetch fetch every image whether
//!      or not anyone reads, so they are machines;
//!    - `known_proxy`: an image proxy fetching one of our links is not a click;
//!    - `known_scanner`: a security scanner or link previewer that names itself;
//!    - `automation`: curl, wget, python-requests, Go, Java, headless browsers, bots, crawlers.
//! 5. `too_soon`: within `too_soon_seconds` of sending (default 10 s for opens, 30 s for
//!    clicks): nobody reads and clicks that fast, scanners and prefetchers do.
//! 6. `burst`: a click that comes within `burst_seconds` (before or after) of a click on another
//!    link of the same message: scanners fetch every link at once, people click one. See
//!    [`bursts`]: the click that starts a burst looks like a person's until the next one comes,
//!    so recording a burst also takes back the clicks before it.

/// What an interaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    Human,
    Machine(MachineReason),
}

impl Classification {
    pub fn label(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine(_) => "machine",
        }
    }

    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Human => None,
            Self::Machine(reason) => Some(reason.code()),
        }
    }
}

/// Why an interaction is taken for software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineReason {
    ProviderFlag,
    HeadRequest,
    NoUserAgent,
    /// Fetched whether or not anyone reads (Apple Mail Privacy Protection, Gmail's prefetch).
    Prefetch,
    /// A webmail image proxy fetching one of our links: proxies fetch images, people click.
    KnownProxy,
    KnownScanner,
    Automation,
    TooSoon,
    Burst,
}

impl MachineReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::ProviderFlag => "provider_flag",
            Self::HeadRequest => "head_request",
            Self::NoUserAgent => "no_user_agent",
            Self::Prefetch => "prefetch",
            Self::KnownProxy => "known_proxy",
            Self::KnownScanner => "known_scanner",
            Self::Automation => "automation",
            Self::TooSoon => "too_soon",
            Self::Burst => "burst",
        }
    }
}

/// The thresholds of the heuristics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub open_too_soon_seconds: i64,
    pub click_too_soon_seconds: i64,
    pub burst_seconds: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            open_too_soon_seconds: 10,
            click_too_soon_seconds: 30,
            burst_seconds: 5,
        }
    }
}

/// What is known of one interaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signal<'a> {
    pub user_agent: Option<&'a str>,
    pub head_request: bool,
    /// The provider's own verdict, if it gives one.
    pub provider_machine_flag: Option<bool>,
    /// Seconds between sending the message and this interaction.
    pub seconds_since_sent: Option<i64>,
    /// Clicks on other links of the same message within `burst_seconds` before or after this
    /// one (clicks only).
    pub other_links_nearby: usize,
}

/// Who a user agent says is fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Agent {
    /// A mail client showing the message to a person. Outlook for Windows fetches images when
    /// the message is displayed, and Office fetches a hyperlink itself when a person clicks it
    /// (then opens the browser at the address it ended on, so that fetch may be the only trace
    /// of the click).
    MailClient,
    /// A webmail image proxy (Gmail, Yahoo): it fetches the images of a message when a person
    /// opens it, on their behalf. An open through it is a person's; a link fetched by it is not
    /// a click.
    ImageProxy,
    /// Fetches every image of a message whether or not anyone reads it.
    Prefetcher,
    /// A mail security scanner or a link previewer that names itself.
    Scanner,
    /// A script, an HTTP library, a headless browser, a bot or a crawler.
    Automation,
    /// Nothing recognised: a browser, or a client that does not say.
    Unrecognised,
}

/// One user-agent rule: what the user agent contains (or is), who that is, and the public
/// sources the rule rests on. docs/tracking.md lists them for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRule {
    /// Lower case.
    pub fragment: &'static str,
    /// The whole user agent must be `fragment` (trimmed, any case), not merely contain it.
    pub whole: bool,
    pub agent: Agent,
    pub sources: &'static [&'static str],
}

const fn contains(
    fragment: &'static str,
    agent: Agent,
    sources: &'static [&'static str],
) -> AgentRule {
    AgentRule {
        fragment,
        whole: false,
        agent,
        sources,
    }
}

const fn exactly(
    fragment: &'static str,
    agent: Agent,
    sources: &'static [&'static str],
) -> AgentRule {
    AgentRule {
        fragment,
        whole: true,
        agent,
        sources,
    }
}

/// Apple Mail Privacy Protection.
const APPLE_MPP: &[&str] = &[
    // "remote content is privately downloaded in the background when you receive a message".
    "https://support.apple.com/guide/mail/use-mail-privacy-protection-mlhl03be2866/mac",
    // Its fetches carry the bare user agent `Mozilla/5.0`, nothing else.
    "https://github.com/ua-parser/uap-core/issues/509",
];
/// Gmail's prefetch, apart from its image proxy.
const GMAIL_PRE: &[&str] = &["https://bird.com/en-gb/blog/gmail-prefetching-images"];
const GMAIL: &[&str] = &[
    // The proxy loads an image the first time the message is opened.
    "https://wordtothewise.com/2013/12/gmail-deploys-image-proxy-servers/",
    // Its user agent, and why device detection now calls it an email client, not a robot.
    "https://www.scientiamobile.com/what-is-google-image-proxy/",
];
const YAHOO: &[&str] = &[
    "https://www.litmus.com/blog/yahoo-mail-introduces-image-caching-what-marketers-must-know",
    "https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
];
const OUTLOOK: &[&str] = &[
    // "Microsoft Outlook 14.0.7149; ms-office; MSOffice 14" is the Outlook email client.
    "https://github.com/browscap/browscap/blob/master/tests/issues/issue-666.php",
];
/// A click in an Office application.
const OFFICE: &[&str] = &[
    // A GET with `ms-office` in its user agent, then the browser's.
    "https://webmasters.stackexchange.com/questions/71112/make-server-force-excel-to-hand-over-hyperlink-to-browser-without-trying-to-load",
    // Office follows the redirects itself and opens the browser at the final address.
    "https://stackoverflow.com/questions/2653626/why-are-cookies-unrecognized-when-a-link-is-clicked-from-an-external-source-i-e",
];
const SCANNERS: &[&str] = &[
    // URLs are scanned prior to message delivery, and again at the time of click.
    "https://learn.microsoft.com/en-us/defender-office-365/safe-links-about",
    "https://community.mimecast.com/docs/DOC-1027",
    "https://support.vircom.com/support/solutions/articles/48000961469-things-to-know-about-proofpoint-url-defense",
    // What senders see: every link clicked seconds after delivery, from the scanner's network.
    "https://github.com/gophish/gophish/issues/2115",
];
const PREVIEW: &[&str] = &["https://darkvisitors.com/agents/bingpreview"];
const TOOLS: &[&str] = &[
    "https://curl.se/docs/manpage.html#-A",
    "https://github.com/golang/go/blob/master/src/net/http/request.go",
];

/// The user-agent rules, first match wins. Order matters where fragments could overlap: the
/// exact `Mozilla/5.0` of Apple's proxy first, mail clients and proxies before the generic
/// scanner and automation words.
pub const AGENT_RULES: &[AgentRule] = &[
    exactly("mozilla/5.0", Agent::Prefetcher, APPLE_MPP),
    // Gmail's prefetch while the recipient has Gmail open: an old Edge with a trailing
    // "Mozilla/5.0", from Google's addresses.
    contains("edge/12.246 mozilla/5.0", Agent::Prefetcher, GMAIL_PRE),
    contains("googleimageproxy", Agent::ImageProxy, GMAIL),
    contains("ggpht.com", Agent::ImageProxy, GMAIL),
    contains("yahoomailproxy", Agent::ImageProxy, YAHOO),
    contains("microsoft outlook", Agent::MailClient, OUTLOOK),
    contains("ms-office", Agent::MailClient, OFFICE),
    contains("msoffice", Agent::MailClient, OFFICE),
    contains("bingpreview", Agent::Scanner, PREVIEW),
    // Scanners are matched when they name themselves; most pass for a browser, which is what
    // the burst rule is for.
    contains("safelinks", Agent::Scanner, SCANNERS),
    contains("proofpoint", Agent::Scanner, SCANNERS),
    contains("mimecast", Agent::Scanner, SCANNERS),
    contains("barracuda", Agent::Scanner, SCANNERS),
    contains("symantec", Agent::Scanner, SCANNERS),
    contains("trendmicro", Agent::Scanner, SCANNERS),
    contains("sophos", Agent::Scanner, SCANNERS),
    contains("fortiguard", Agent::Scanner, SCANNERS),
    contains("ironport", Agent::Scanner, SCANNERS),
    contains("cisco", Agent::Scanner, SCANNERS),
    contains("curl/", Agent::Automation, TOOLS),
    contains("wget/", Agent::Automation, TOOLS),
    contains("python-requests", Agent::Automation, TOOLS),
    contains("python-urllib", Agent::Automation, TOOLS),
    contains("go-http-client", Agent::Automation, TOOLS),
    contains("java/", Agent::Automation, TOOLS),
    contains("okhttp", Agent::Automation, TOOLS),
    contains("headlesschrome", Agent::Automation, TOOLS),
    contains("phantomjs", Agent::Automation, TOOLS),
    contains("slurp", Agent::Automation, TOOLS),
    contains("bot", Agent::Automation, TOOLS),
    contains("spider", Agent::Automation, TOOLS),
    contains("crawler", Agent::Automation, TOOLS),
];

/// Who `user_agent` says is fetching, by the first rule of [`AGENT_RULES`] that matches.
pub fn agent(user_agent: &str) -> Agent {
    let lower = user_agent.trim().to_ascii_lowercase();
    AGENT_RULES
        .iter()
        .find(|rule| {
            if rule.whole {
                lower == rule.fragment
            } else {
                lower.contains(rule.fragment)
            }
        })
        .map_or(Agent::Unrecognised, |rule| rule.agent)
}

/// The rules every interaction goes through first: what they find, or who the agent is.
fn common(signal: &Signal<'_>) -> Result<Agent, MachineReason> {
    if signal.provider_machine_flag == Some(true) {
        return Err(MachineReason::ProviderFlag);
    }
    if signal.head_request {
        return Err(MachineReason::HeadRequest);
    }
    match signal.user_agent.map(str::trim) {
        None | Some("") => Err(MachineReason::NoUserAgent),
        Some(user_agent) => Ok(agent(user_agent)),
    }
}

fn sooner_than(signal: &Signal<'_>, seconds: i64) -> bool {
    signal
        .seconds_since_sent
        .is_some_and(|since_sent| since_sent < seconds)
}

/// Classifies an open (a fetch of the tracking pixel).
pub fn classify_open(signal: &Signal<'_>, thresholds: &Thresholds) -> Classification {
    let agent = match common(signal) {
        Ok(agent) => agent,
        Err(reason) => return Classification::Machine(reason),
    };
    let by_agent = match agent {
        Agent::Prefetcher => Some(MachineReason::Prefetch),
        Agent::Scanner => Some(MachineReason::KnownScanner),
        Agent::Automation => Some(MachineReason::Automation),
        // These fetch the pixel because a person is looking at the message.
        Agent::MailClient | Agent::ImageProxy | Agent::Unrecognised => None,
    };
    if let Some(reason) = by_agent {
        return Classification::Machine(reason);
    }
    if sooner_than(signal, thresholds.open_too_soon_seconds) {
        return Classification::Machine(MachineReason::TooSoon);
    }
    Classification::Human
}

/// Classifies a click (a GET of one of our links).
pub fn classify_click(signal: &Signal<'_>, thresholds: &Thresholds) -> Classification {
    let agent = match common(signal) {
        Ok(agent) => agent,
        Err(reason) => return Classification::Machine(reason),
    };
    let by_agent = match agent {
        Agent::Prefetcher => Some(MachineReason::Prefetch),
        // Image proxies fetch images; a link they fetch is a preview, not a click.
        Agent::ImageProxy => Some(MachineReason::KnownProxy),
        Agent::Scanner => Some(MachineReason::KnownScanner),
        Agent::Automation => Some(MachineReason::Automation),
        // Office fetches a link only when a person clicks it.
        Agent::MailClient | Agent::Unrecognised => None,
    };
    if let Some(reason) = by_agent {
        return Classification::Machine(reason);
    }
    if sooner_than(signal, thresholds.click_too_soon_seconds) {
        return Classification::Machine(MachineReason::TooSoon);
    }
    if signal.other_links_nearby > 0 {
        return Classification::Machine(MachineReason::Burst);
    }
    Classification::Human
}

/// The burst rule over the clicks of one message, given as (link, second): whether each came
/// within `burst_seconds`, before or after, of a click on another link. Scanners fetch every
/// link at once; a person clicks one, and may click it twice, which is not a burst.
///
/// The tracker applies it click by click, as they come: a click with clicks on other links
/// within the window either side is a burst, and so are those clicks (they are taken back as
/// `burst` in the same transaction). Whatever order the clicks come in, that ends where this
/// function says (the property test below checks it).
pub fn bursts<L: PartialEq>(clicks: &[(L, i64)], burst_seconds: i64) -> Vec<bool> {
    let window = u64::try_from(burst_seconds).unwrap_or(0);
    clicks
        .iter()
        .map(|(link, at)| {
            clicks
                .iter()
                .any(|(other, other_at)| other != link && at.abs_diff(*other_at) <= window)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const OUTLOOK_DESKTOP: &str =
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)";
    const OUTLOOK_2010: &str = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/7.0; SLCC2; .NET CLR 2.0.50727; Microsoft Outlook 14.0.7149; ms-office; MSOffice 14)";
    const OFFICE_LINK: &str = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; WOW64; Trident/7.0; InfoPath.3; ms-office)";
    const GMAIL_PROXY: &str =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    const GMAIL_PREFETCH: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0";
    const YAHOO_PROXY: &str =
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html";
    const MPP_AGENT: &str = "Mozilla/5.0";
    const APPLE_MAIL: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";

    fn person(seconds: i64) -> Signal<'static> {
        Signal {
            user_agent: Some(IPHONE),
            seconds_since_sent: Some(seconds),
            ..Signal::default()
        }
    }

    /// `user_agent`, an hour after sending.
    fn with_agent(user_agent: &'static str) -> Signal<'static> {
        Signal {
            user_agent: Some(user_agent),
            ..person(3600)
        }
    }

    fn head(user_agent: &'static str) -> Signal<'static> {
        Signal {
            head_request: true,
            ..with_agent(user_agent)
        }
    }

    fn without_agent(user_agent: Option<&'static str>) -> Signal<'static> {
        Signal {
            user_agent,
            ..person(3600)
        }
    }

    fn flagged() -> Signal<'static> {
        Signal {
            provider_machine_flag: Some(true),
            ..person(3600)
        }
    }

    fn early(user_agent: &'static str) -> Signal<'static> {
        Signal {
            seconds_since_sent: Some(2),
            ..with_agent(user_agent)
        }
    }

    #[test]
    fn a_person_reading_later_is_human() {
        let thresholds = Thresholds::default();
        assert_eq!(
            classify_open(&person(3600), &thresholds),
            Classification::Human
        );
        assert_eq!(
            classify_click(&person(3600), &thresholds),
            Classification::Human
        );
        // Without knowing when it was sent, a browser is a person.
        let unknown_time = Signal {
            seconds_since_sent: None,
            ..person(0)
        };
        assert_eq!(
            classify_click(&unknown_time, &thresholds),
            Classification::Human
        );
    }

    #[test]
    fn the_usual_business_mail_clients_open_as_people() {
        let thresholds = Thresholds::default();
        // Outlook for Windows and the Gmail and Yahoo proxies fetch when a person opens the
        // message; Apple Mail without Privacy Protection fetches from the reader's device.
        let readers = [
            OUTLOOK_DESKTOP,
            OUTLOOK_2010,
            GMAIL_PROXY,
            YAHOO_PROXY,
            APPLE_MAIL,
        ];
        for user_agent in readers {
            assert_eq!(
                classify_open(&with_agent(user_agent), &thresholds),
                Classification::Human,
                "{user_agent}"
            );
        }
        // Office fetches a link only when a person clicks it.
        for user_agent in [OUTLOOK_DESKTOP, OFFICE_LINK] {
            assert_eq!(
                classify_click(&with_agent(user_agent), &thresholds),
                Classification::Human,
                "{user_agent}"
            );
        }
    }

    #[test]
    fn prefetches_are_machines_whether_or_not_anyone_reads() {
        let thresholds = Thresholds::default();
        for user_agent in [MPP_AGENT, " Mozilla/5.0 ", GMAIL_PREFETCH] {
            assert_eq!(
                classify_open(&with_agent(user_agent), &thresholds),
                Classification::Machine(MachineReason::Prefetch),
                "{user_agent}"
            );
        }
        // A proxy fetching one of our links is not a person clicking it.
        for user_agent in [GMAIL_PROXY, YAHOO_PROXY] {
            assert_eq!(
                classify_click(&with_agent(user_agent), &thresholds),
                Classification::Machine(MachineReason::KnownProxy),
                "{user_agent}"
            );
        }
    }

    #[test]
    fn each_heuristic_names_its_reason() {
        let thresholds = Thresholds::default();
        let machine = |reason| Classification::Machine(reason);
        let bing = "Mozilla/5.0 (compatible; BingPreview/1.0b)";
        let barracuda = "Mozilla/5.0 (compatible; Barracuda Sentinel URL Scanner)";
        // The same for opens and clicks.
        let cases = [
            (flagged(), MachineReason::ProviderFlag),
            (head(IPHONE), MachineReason::HeadRequest),
            (head(OUTLOOK_DESKTOP), MachineReason::HeadRequest),
            (without_agent(None), MachineReason::NoUserAgent),
            (without_agent(Some(" ")), MachineReason::NoUserAgent),
            (with_agent(MPP_AGENT), MachineReason::Prefetch),
            (with_agent(bing), MachineReason::KnownScanner),
            (with_agent(barracuda), MachineReason::KnownScanner),
            (
                with_agent("python-requests/2.31"),
                MachineReason::Automation,
            ),
            (
                with_agent("Mozilla/5.0 HeadlessChrome/120.0"),
                MachineReason::Automation,
            ),
            (person(2), MachineReason::TooSoon),
        ];
        for (signal, reason) in cases {
            let expected = machine(reason);
            assert_eq!(classify_open(&signal, &thresholds), expected, "{signal:?}");
            assert_eq!(classify_click(&signal, &thresholds), expected, "{signal:?}");
        }
        // A proxy fetching the pixel at once is too soon to be a person; a link it fetches is
        // a preview whenever it comes.
        assert_eq!(
            classify_open(&early(GMAIL_PROXY), &thresholds),
            machine(MachineReason::TooSoon)
        );
        assert_eq!(
            classify_click(&early(GMAIL_PROXY), &thresholds),
            machine(MachineReason::KnownProxy)
        );
        // Clicks: slower than opens, and never several links at once.
        assert_eq!(
            classify_open(&person(20), &thresholds),
            Classification::Human
        );
        assert_eq!(
            classify_click(&person(20), &thresholds),
            machine(MachineReason::TooSoon)
        );
        let burst = Signal {
            other_links_nearby: 3,
            ..person(3600)
        };
        assert_eq!(
            classify_click(&burst, &thresholds),
            machine(MachineReason::Burst)
        );
        assert_eq!(classify_open(&burst, &thresholds), Classification::Human);
        // The provider saying "not a machine" does not override other evidence.
        let flagged_human = Signal {
            provider_machine_flag: Some(false),
            user_agent: Some("curl/8.0"),
            ..person(3600)
        };
        assert_eq!(
            classify_open(&flagged_human, &thresholds),
            machine(MachineReason::Automation)
        );
    }

    #[test]
    fn a_scanner_following_every_link_is_a_burst_a_double_click_is_not() {
        // A scanner 40 s after sending: past the too-soon window, every link within a second.
        let scanner = [
            ("pay", 40),
            ("already_paid", 40),
            ("dispute", 41),
            ("promise_to_pay", 41),
        ];
        assert_eq!(bursts(&scanner, 5), vec![true; 4]);
        // A person clicks pay twice, then the dispute link a minute later.
        let reader = [("pay", 3600), ("pay", 3601), ("dispute", 3660)];
        assert_eq!(bursts(&reader, 5), vec![false; 3]);
        // The window counts both ways; a window of 0 only catches the same second.
        assert_eq!(bursts(&[("pay", 10), ("dispute", 5)], 5), vec![true, true]);
        assert_eq!(bursts(&[("pay", 10), ("dispute", 11)], 0), vec![false; 2]);
    }

    #[test]
    fn every_agent_rule_rests_on_a_public_source() {
        assert!(!AGENT_RULES.is_empty());
        for rule in AGENT_RULES {
            assert!(!rule.fragment.is_empty(), "{rule:?}");
            assert_eq!(
                rule.fragment,
                rule.fragment.to_ascii_lowercase(),
                "{rule:?}"
            );
            assert!(!rule.sources.is_empty(), "{rule:?}");
            assert!(
                rule.sources
                    .iter()
                    .all(|source| source.starts_with("https://")),
                "{rule:?}"
            );
        }
    }

    /// What the tracker does click by click, in the order clicks reach it
    /// (`tracking::other_clicks_between`, then `tracking::reclassify_burst`): a click with
    /// clicks on other links within the window either side is a burst, and so are they.
    fn as_recorded(arrivals: &[(u8, i64)], burst_seconds: i64) -> Vec<bool> {
        let mut burst = vec![false; arrivals.len()];
        for (index, (link, at)) in arrivals.iter().enumerate() {
            let nearby: Vec<usize> = (0..index)
                .filter(|&earlier| {
                    arrivals.get(earlier).is_some_and(|(other, other_at)| {
                        other != link && (other_at - at).abs() <= burst_seconds
                    })
                })
                .collect();
            if !nearby.is_empty() {
                for marked in nearby.into_iter().chain(std::iter::once(index)) {
                    if let Some(flag) = burst.get_mut(marked) {
                        *flag = true;
                    }
                }
            }
        }
        burst
    }

    /// A user agent: anything printable, or one of the usual ones.
    fn any_agent() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,60}",
            Just(IPHONE.to_string()),
            Just(OUTLOOK_DESKTOP.to_string()),
            Just(GMAIL_PROXY.to_string()),
            Just(MPP_AGENT.to_string()),
            Just("curl/8.0".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn recording_click_by_click_ends_as_the_burst_rule_says_whatever_the_order(
            arrivals in proptest::collection::vec((0u8..4, 0i64..60), 0..12),
            burst_seconds in 0i64..10,
        ) {
            prop_assert_eq!(
                as_recorded(&arrivals, burst_seconds),
                bursts(&arrivals, burst_seconds)
            );
        }

        #[test]
        fn outlook_and_gmail_opens_read_later_are_people_whatever_the_build(
            build in 0u32..100_000,
            seconds in 10i64..10_000_000,
        ) {
            let outlook = format!(
                "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.{build}; Pro)"
            );
            for user_agent in [outlook.as_str(), GMAIL_PROXY] {
                let signal = Signal {
                    user_agent: Some(user_agent),
                    seconds_since_sent: Some(seconds),
                    ..Signal::default()
                };
                prop_assert_eq!(
                    classify_open(&signal, &Thresholds::default()),
                    Classification::Human
                );
            }
        }

        #[test]
        fn more_evidence_of_a_machine_never_makes_a_person(
            user_agent in proptest::option::of(any_agent()),
            head_request in any::<bool>(),
            flag in proptest::option::of(any::<bool>()),
            seconds in proptest::option::of(-100i64..10_000),
            nearby in 0usize..4,
        ) {
            let thresholds = Thresholds::default();
            let signal = Signal {
                user_agent: user_agent.as_deref(),
                head_request,
                provider_machine_flag: flag,
                seconds_since_sent: seconds,
                other_links_nearby: nearby,
            };
            let stronger = [
                Signal {
                    head_request: true,
                    ..signal.clone()
                },
                Signal {
                    provider_machine_flag: Some(true),
                    ..signal.clone()
                },
                Signal {
                    seconds_since_sent: seconds.map(|seconds| seconds - 100),
                    ..signal.clone()
                },
                Signal {
                    other_links_nearby: nearby + 1,
                    ..signal.clone()
                },
            ];
            let classifiers: [fn(&Signal<'_>, &Thresholds) -> Classification; 2] =
                [classify_open, classify_click];
            for classify in classifiers {
                if classify(&signal, &thresholds) != Classification::Human {
                    for more in &stronger {
                        prop_assert_ne!(
                            classify(more, &thresholds),
                            Classification::Human,
                            "{:?}",
                            more
                        );
                    }
                }
                // HEAD is never a person, whatever the agent says.
                prop_assert_ne!(classify(&stronger[0], &thresholds), Classification::Human);
            }
        }

        #[test]
        fn user_agents_are_matched_in_any_case(user_agent in "[ -~]{0,80}") {
            prop_assert_eq!(agent(&user_agent.to_ascii_uppercase()), agent(&user_agent));
        }
    }
}
