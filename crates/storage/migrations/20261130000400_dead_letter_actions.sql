-- Replaying dead letters is a person's action like any other: recorded with who and why.
ALTER TABLE manual_actions DROP CONSTRAINT manual_actions_subject_kind_check;
ALTER TABLE manual_actions ADD CONSTRAINT manual_actions_subject_kind_check
    CHECK (subject_kind IN ('invoice', 'customer', 'reminder', 'dead_letter'));
