# Consul ACL policy for people and CI running `drover apply`, `get`, `describe`, `delete` and `wait`.
# Each rule names the calls that need it.

# `apply`: GET then PUT /v1/kv/drover/apps/<ns>/<name>?cas=N (a record written only over the version read);
# `delete`: GET then DELETE /v1/kv/drover/apps/<ns>/<name>; `get`: GET /v1/kv/drover/apps/?recurse;
# `describe` and `wait`: GET /v1/kv/drover/apps/<ns>/<name>.
key_prefix "drover/apps/" {
  policy = "write"
}

# `get`: GET /v1/kv/drover/status/?recurse; `describe`: GET /v1/kv/drover/status/<ns>/<name>; `wait`: the same as a
# blocking query. Statuses are Drover's to write.
key_prefix "drover/status/" {
  policy = "read"
}
