# Consul ACL policy for people and CI running `drover apply`, `get`, `describe` and `delete`.
key_prefix "drover/apps/" {
  policy = "write"
}
key_prefix "drover/status/" {
  policy = "read"
}
