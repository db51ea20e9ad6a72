# Consul ACL policy for the token `drover run` uses (CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE).
# Records are only read; status is written; nothing else in KV is touched. Each rule names the calls that need it;
# e2e/tests/acl.rs runs Drover with exactly these rules, and with each one removed.
# (The HA leader lock, issue #9, will add `key "drover/leader"` write and `session_prefix ""` write; rollout
# commands, issue #8, `key_prefix "drover/control/"` read. Drover makes neither call today.)

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
