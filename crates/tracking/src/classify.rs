//! Human or machine? Opens and clicks are noisy: Apple Mail Privacy Protection and webmail image
//! proxies fetch every pixel whether or not anyone reads the message, and security scanners
//! (Microsoft Safe Links, Proofpoint, Mimecast, Barracuda...) follow every link seconds after
//! delivery. relance counts only human interactions in its rates and keeps machine ones apart,
//! with the reason. No dunning decision is ever based on an open.
//!
//! The heuristics, in order (the first that matches names the reason):
//!
//! 1. `provider_flag`: the provider says so (SendGrid's `sg_machine_open`).
//! 2. `head_request`: a HEAD request (link checkers and prefetchers; browsers send GET).
//! 3. `no_user_agent`: no user agent at all.
//! 4. `known_proxy` / `known_scanner` / `automation`: a user agent of an image proxy (Google,
//!    Yahoo, Outlook, and the bare `Mozilla/5.0` of Apple's privacy proxy), a link scanner, or a
//!    script (curl, python-requests, headless browsers, crawlers).
//! 5. `too_soon`: within `too_soon_seconds` of sending (default 10 s for opens, 30 s for
//!    clicks): nobody reads and clicks that fast, scanners and prefetchers do.
//! 6. `burst`: a click that comes with clicks on other links of the same message within
//!    `burst_seconds` (scanners open every link at once; people click one).

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
    /// Clicks on other links of the same message within `burst_seconds` (clicks only).
    pub other_links_nearby: usize,
}

const PROXIES: [&str; 6] = [
    "googleimageproxy",
    "ggpht.com",
    "yahoomailproxy",
    "yahoo! slurp",
    "outlook-ios-imageproxy",
    "proxy",
];
const SCANNERS: [&str; 12] = [
    "safelinks",
    "microsoft office",
    "ms-office",
    "bingpreview",
    "proofpoint",
    "mimecast",
    "barracuda",
    "symantec",
    "trendmicro",
    "sophos",
    "fortiguard",
    "cisco",
];
const AUTOMATION: [&str; 12] = [
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "headlesschrome",
    "phantomjs",
    "bot",
    "spider",
    "crawler",
];

fn user_agent_reason(user_agent: &str) -> Option<MachineReason> {
    let lower = user_agent.to_ascii_lowercase();
    // Apple Mail Privacy Protection fetches through Apple's proxies with this bare user agent.
    if lower == "mozilla/5.0" || PROXIES.iter().any(|needle| lower.contains(needle)) {
        Some(MachineReason::KnownProxy)
    } else if SCANNERS.iter().any(|needle| lower.contains(needle)) {
        Some(MachineReason::KnownScanner)
    } else if AUTOMATION.iter().any(|needle| lower.contains(needle)) {
        Some(MachineReason::Automation)
    } else {
        None
    }
}

fn common(signal: &Signal<'_>) -> Option<MachineReason> {
    if signal.provider_machine_flag == Some(true) {
        return Some(MachineReason::ProviderFlag);
    }
    if signal.head_request {
        return Some(MachineReason::HeadRequest);
    }
    match signal.user_agent.map(str::trim) {
        None | Some("") => Some(MachineReason::NoUserAgent),
        Some(user_agent) => user_agent_reason(user_agent),
    }
}

/// Classifies an open.
pub fn classify_open(signal: &Signal<'_>, thresholds: &Thresholds) -> Classification {
    if let Some(reason) = common(signal) {
        return Classification::Machine(reason);
    }
    if signal
        .seconds_since_sent
        .is_some_and(|seconds| seconds < thresholds.open_too_soon_seconds)
    {
        return Classification::Machine(MachineReason::TooSoon);
    }
    Classification::Human
}

/// Classifies a click.
pub fn classify_click(signal: &Signal<'_>, thresholds: &Thresholds) -> Classification {
    if let Some(reason) = common(signal) {
        return Classification::Machine(reason);
    }
    if signal
        .seconds_since_sent
        .is_some_and(|seconds| seconds < thresholds.click_too_soon_seconds)
    {
        return Classification::Machine(MachineReason::TooSoon);
    }
    if signal.other_links_nearby > 0 {
        return Classification::Machine(MachineReason::Burst);
    }
    Classification::Human
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

    fn person(seconds: i64) -> Signal<'static> {
        Signal {
            user_agent: Some(IPHONE),
            seconds_since_sent: Some(seconds),
            ..Signal::default()
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
    fn each_heuristic_names_its_reason() {
        let thresholds = Thresholds::default();
        let machine = |reason| Classification::Machine(reason);
        let cases: Vec<(Signal<'static>, MachineReason)> = vec![
            (Signal { provider_machine_flag: Some(true), ..person(3600) }, MachineReason::ProviderFlag),
            (Signal { head_request: true, ..person(3600) }, MachineReason::HeadRequest),
            (Signal { user_agent: None, ..person(3600) }, MachineReason::NoUserAgent),
            (Signal { user_agent: Some(" "), ..person(3600) }, MachineReason::NoUserAgent),
            (Signal { user_agent: Some("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"), ..person(3600) }, MachineReason::KnownProxy),
            (Signal { user_agent: Some("Mozilla/5.0"), ..person(3600) }, MachineReason::KnownProxy),
            (Signal { user_agent: Some("Mozilla/5.0 (compatible; BingPreview/1.0b)"), ..person(3600) }, MachineReason::KnownScanner),
            (Signal { user_agent: Some("python-requests/2.31"), ..person(3600) }, MachineReason::Automation),
            (Signal { user_agent: Some("Mozilla/5.0 HeadlessChrome/120.0"), ..person(3600) }, MachineReason::Automation),
            (person(2), MachineReason::TooSoon),
        ];
        for (signal, reason) in cases {
            assert_eq!(
                classify_open(&signal, &thresholds),
                machine(reason),
                "{signal:?}"
            );
            assert_eq!(
                classify_click(&signal, &thresholds),
                machine(reason),
                "{signal:?}"
            );
        }
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
}
