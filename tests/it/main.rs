//! All integration tests in one binary: one link instead of twenty-two, a
//! fraction of the disk and build time. `admin_sighup` stays its own binary
//! because the signal goes to the whole process.

mod common;
#[path = "admin_support/harness.rs"]
mod harness;
mod identity_support;

mod admin_cli;
mod admin_http;
mod admin_reload;
mod admin_secrets;
mod admin_throttle;
mod cli_verbs;
mod collector_example;
mod deploy_files;
mod dev_client_credentials;
mod dev_report;
mod docs_commands;
mod e2e_identity;
mod e2e_policy;
mod e2e_rotation;
mod fleet_credentials;
mod fleet_limits;
mod fleet_outage;
mod fleet_sentinel;
mod grpc_ingress;
mod grpc_pipeline;
mod hostile_admin;
mod hostile_listener;
mod hostile_reload;
mod identity_cache;
mod identity_eddsa;
mod identity_hostile;
mod identity_hostile_more;
mod identity_introspect;
mod identity_lifecycle;
mod identity_presets;
mod identity_rediscovery;
mod identity_unknown_kid_outage;
mod identity_verify;
mod logs_messages;
mod metrics_scrape;
mod otlp_decode;
mod otlp_rewrite;
mod policy_decide;
mod policy_diff_cli;
mod policy_explain;
mod policy_lint;
mod policy_load;
mod policy_test_cli;
mod proxy_budget;
mod proxy_core;
mod proxy_spool;
mod proxy_transport;
mod secrets_store;
mod signals_http;
mod spool_crash;
mod spool_disk;
mod spool_signal;
mod spool_slow;
mod upstream_grpc;
mod upstream_presets;
mod vercel;
