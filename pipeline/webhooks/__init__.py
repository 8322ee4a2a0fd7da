"""Webhooks: a tenant's HTTPS endpoints told of its calls' events (transcript ready, call
ended, hint), each delivery signed with the webhook's secret, retried with backoff and
logged. In the ground layer: it needs only the events, the bus and the database."""
