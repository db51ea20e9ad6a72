# Nomad ACL policy for the token `drover run` uses (NOMAD_TOKEN or --nomad-token-file). Every replica must use the
# same token: Nomad counts the registering token as part of a job's spec, so two tokens would make a new job version
# on every register (api-contract B4, C16). List the namespaces Drover manages instead of "*" to narrow it.
# e2e/tests/acl.rs runs Drover with exactly these capabilities, and with each one removed.
# No `scale-job`: Nomad's Job.Scale accepts submit-job as well (nomad/job_endpoint.go: hasScaleJob || hasSubmitJob).
namespace "*" {
  capabilities = [
    # GET /v1/jobs?namespace=*&meta=true (the live list) and GET /v1/namespaces (a namespace is listed to a token
    # with any capability in it).
    "list-jobs",
    # GET /v1/job/<id>, /v1/job/<id>/deployment(s), /v1/job/<id>/allocations, /v1/deployment/<id>, and the event
    # stream (GET /v1/event/stream, topics Job, Deployment, Allocation, Evaluation).
    "read-job",
    # POST /v1/job/<id> (register), /v1/job/<id>/plan, DELETE /v1/job/<id> (deletionPolicy Delete or Purge),
    # POST /v1/deployment/promote|fail/<id>, POST /v1/job/<id>/scale (autoscaling).
    "submit-job",
  ]
}
