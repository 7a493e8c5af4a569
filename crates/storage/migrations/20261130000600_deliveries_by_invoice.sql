-- Found by the chaos run: attribution looked up the deliveries of a paid invoice with
-- `$1 = ANY(invoice_ids)`, a scan of every delivery per payment; at 30,000 payments over
-- 40,000 deliveries the tracker fell minutes behind. An inverted index answers `@>`.
CREATE INDEX deliveries_by_invoice ON deliveries USING gin (invoice_ids);
