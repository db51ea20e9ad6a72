# Consul ACL policy for people and CI running `drover apply`, `get`, `describe`, `delete`, `wait`, the rollout
# controls (`promote`, `abort`, `retry`, `pause`, `resume`, `restart`) and `drover sync`.
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

# `promote`, `abort`, `retry`, `pause`, `resume`, `restart`: PUT /v1/kv/drover/control/<ns>/<name> (the control, for
# the record's current generation; Drover only reads it).
key_prefix "drover/control/" {
  policy = "write"
}

# `drover sync`: PUT /v1/kv/drover/sync/<name> (the outcome) and GET /v1/kv/drover/sync/?recurse (`sync status`);
# `sync --watch` also holds PUT /v1/kv/drover/sync/<name>/lock?acquire= (its own lock). Records are written with the
# drover/apps/ rule above (PUT /v1/txn, CAS per record).
key_prefix "drover/sync/" {
  policy = "write"
}

# `drover sync --watch`: the session that holds its lock: PUT /v1/session/create, /v1/session/renew/<id>,
# /v1/session/destroy/<id>.
session_prefix "" {
  policy = "write"
}
