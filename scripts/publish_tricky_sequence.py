#!/usr/bin/env python3
"""Publishes the tricky event sequence of docs/events.md with a plain Kafka client
(confluent-kafka, that is librdkafka from Python), as a billing system would.

After the ingestor has applied it, invoice INVOICE is partially_paid with 8000 EUR due on
2026-12-31 (see docs/events.md, "A tricky sequence").
"""
import argparse
import json
import sys

from confluent_kafka import Producer


def envelope(event_type, event_id, tenant, customer, time, data):
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/billing/{tenant}",
        "type": event_type,
        "time": time,
        "datacontenttype": "application/json",
        "tenant": tenant,
        "schemaversion": 1,
        "partitionkey": customer,
        "data": data,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--customer", default="cus_tricky")
    parser.add_argument("--invoice", default="inv_tricky")
    parser.add_argument("--invoices-topic", default="billing.invoices")
    parser.add_argument("--payments-topic", default="billing.payments")
    parser.add_argument("--customers-topic", default="billing.customers")
    args = parser.parse_args()
    tenant, customer, invoice = args.tenant, args.customer, args.invoice

    def money(amount):
        return {"amount_minor": amount, "currency": "EUR"}

    payment = envelope("billing.payment.succeeded", f"{invoice}-pay-1", tenant, customer, "2026-11-05T10:00:01Z", {
        "payment_id": f"{invoice}-p1", "invoice_id": invoice, "customer_id": customer,
        "amount": money(3000), "paid_at": "2026-11-05T10:00:00Z", "method": "bank_transfer"})
    dispute = {"dispute_id": f"{invoice}-d1", "invoice_id": invoice, "customer_id": customer}
    sequence = [
        # 1. A payment arrives before its invoice.
        (args.payments_topic, payment),
        # 2. The invoice: 100.00 EUR due on 2026-11-10, revision 1.
        (args.invoices_topic, envelope("billing.invoice.issued", f"{invoice}-issued", tenant, customer, "2026-11-01T09:00:00Z", {
            "invoice_id": invoice, "customer_id": customer, "number": "F-TRICKY", "issued_on": "2026-11-01",
            "due_on": "2026-11-10", "total": money(10000), "revision": 1})),
        # 3. The newest update (revision 3): 120.00 EUR, due on 2026-12-31.
        (args.invoices_topic, envelope("billing.invoice.updated", f"{invoice}-update-3", tenant, customer, "2026-11-08T09:00:00Z", {
            "invoice_id": invoice, "customer_id": customer, "revision": 3, "total": money(12000), "due_on": "2026-12-31"})),
        # 4. An older update (revision 2) arrives after it, and must not win.
        (args.invoices_topic, envelope("billing.invoice.updated", f"{invoice}-update-2", tenant, customer, "2026-11-06T09:00:00Z", {
            "invoice_id": invoice, "customer_id": customer, "revision": 2, "due_on": "2026-11-20"})),
        # 5-6. A dispute's resolution arrives before its opening.
        (args.invoices_topic, envelope("billing.invoice.disputed", f"{invoice}-dispute-resolved", tenant, customer, "2026-11-09T09:00:00Z",
            dict(dispute, status="resolved", resolution="in_favour_of_merchant"))),
        (args.invoices_topic, envelope("billing.invoice.disputed", f"{invoice}-dispute-opened", tenant, customer, "2026-11-07T09:00:00Z",
            dict(dispute, status="opened", reason="Quantity does not match the delivery note"))),
        # 7. The payment is delivered a second time.
        (args.payments_topic, payment),
        # 8. A credit note of 10.00 EUR.
        (args.invoices_topic, envelope("billing.credit_note.applied", f"{invoice}-credit-1", tenant, customer, "2026-11-09T12:00:00Z", {
            "credit_note_id": f"{invoice}-cn1", "invoice_id": invoice, "customer_id": customer, "amount": money(1000)})),
        # 9. The customer's profile arrives after the invoice.
        (args.customers_topic, envelope("billing.customer.upserted", f"{customer}-profile-1", tenant, customer, "2026-11-02T09:00:00Z", {
            "customer_id": customer, "revision": 1, "legal_name": "Tricky SAS",
            "contact": {"first_name": "Alex", "last_name": "Martin", "email": "alex.martin@tricky.example"},
            "locale": "fr-FR", "timezone": "Europe/Paris", "country": "FR", "segment": {"vip": False, "risk_level": "low"}})),
    ]
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all"})
    failures = []

    def report(error, message):
        if error is not None:
            failures.append(error)

    for topic, event in sequence:
        producer.produce(topic, key=customer.encode(), value=json.dumps(event).encode(),
                         headers=[("content-type", b"application/cloudevents+json; charset=utf-8")],
                         on_delivery=report)
    producer.flush(30)
    if failures:
        print(f"delivery failed: {failures}", file=sys.stderr)
        return 1
    print(f"published {len(sequence)} records ({len(sequence) - 1} distinct events) for {invoice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
