# Nomad ACL policy for the token `drover run` uses (NOMAD_TOKEN). Every replica must use the same token:
# Nomad counts the registering token as part of a job's spec, so two tokens would make a new job version on every
# register (api-contract B4, C16). List namespaces Drover manages instead of "*" to narrow it.
namespace "*" {
  capabilities = ["list-jobs", "read-job", "submit-job", "scale-job"]
}
