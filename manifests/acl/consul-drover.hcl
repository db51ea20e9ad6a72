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

# The leader lock (`drover run` with leader election, the default): PUT /v1/kv/drover/leader?acquire=|release=
# and its blocking GET (a standby waits there for the lock to be free).
key "drover/leader" {
  policy = "write"
}
# The session that holds the leader lock: PUT /v1/session/create, /v1/session/renew/<id>, /v1/session/destroy/<id>
# (sessions are on the agent's node, so the rule covers every node name).
session_prefix "" {
  policy = "write"
}
