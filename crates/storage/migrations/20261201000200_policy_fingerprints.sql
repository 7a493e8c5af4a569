-- What each policy said when a scheduler last started: when its content changes, the open
-- invoices it governs are planned again at once, not each at its next planned action.
-- `policy_key` is a tenant with its own policy file, or 'default' (every other tenant).
CREATE TABLE policy_fingerprints (
    policy_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
