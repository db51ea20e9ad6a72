# Consul ACL policy for the token `drover run` uses (CONSUL_HTTP_TOKEN).
# Records are only read; status is written; nothing else in KV is touched.
key_prefix "drover/apps/" {
  policy = "read"
}
key_prefix "drover/status/" {
  policy = "write"
}
key_prefix "drover/control/" {
  policy = "read"
}
# The leader lock (`drover run` with leader election, the default): acquire and release of the lock key, and the
# session that holds it (create, renew, destroy).
key "drover/leader" {
  policy = "write"
}
session_prefix "" {
  policy = "write"
}
