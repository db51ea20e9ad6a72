# Consul ACL policy for the token `drover run` uses (CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE).
# Records are only read; status is written; nothing else in KV is touched. Each rule names the calls that need it;
# e2e/tests/acl.rs runs Drover with exactly these rules, and with each one removed.

# GET /v1/kv/drover/apps/?recurse (the record watch, a blocking query) and GET /v1/kv/drover/apps/<ns>/<name>
# (a reconcile re-reads a record missing from the watch, to prove it gone before any deletion policy applies).
key_prefix "drover/apps/" {
  policy = "read"
}

# GET /v1/kv/drover/status/?recurse (statuses loaded at start), PUT /v1/txn (the status write, a CAS on the status
# key's ModifyIndex) and DELETE /v1/kv/drover/status/<ns>/<name>?cas=N (the status of a deleted record).
key_prefix "drover/status/" {
  policy = "write"
}
# GET /v1/kv/drover/control/?recurse (the controls watch, a blocking query): `drover promote|abort|...` write there
# with the operator's token; Drover only reads them.
key_prefix "drover/control/" {
  policy = "read"
}

# The leader lock (`drover run` with leader election, the default): acquire and release of the lock key, and the
# session that holds it: PUT /v1/kv/drover/leader?acquire=|release= (and its blocking GET), PUT /v1/session/create,
# /renew/<id>, /destroy/<id>.
key "drover/leader" {
  policy = "write"
}
session_prefix "" {
  policy = "write"
}
