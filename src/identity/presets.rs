//! Provider validation and IdP presets: a [`ProviderConfig`] becomes a
//! resolved [`ProviderSpec`] or a list of messages.
//!
//! Presets set the defaults each IdP needs and refuse issuer forms that cannot
//! be right (see docs/identity.md for the claims each preset yields).

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::introspect::IntrospectionSpec;
use super::provider::ProviderSpec;
use super::{ASYMMETRIC_ALGORITHMS, MAX_REDISCOVERY_INTERVAL, ProviderConfig};

/// Known identity providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Okta custom authorization server `https://X.okta.com/oauth2/<id>`.
    Okta,
    /// Auth0 tenant `https://X.auth0.com/` (trailing slash).
    Auth0,
    /// Microsoft Entra ID; v1 and v2 issuers of one tenant.
    Entra,
    /// Vercel OIDC federation, team or global issuer.
    Vercel,
    /// Amazon Cognito user pool (access tokens carry `client_id`, not `aud`).
    Cognito,
    /// Keycloak realm `https://host/realms/<realm>`.
    Keycloak,
    /// Google `https://accounts.google.com`.
    Google,
    /// AWS IAM outbound identity federation (STS `GetWebIdentityToken`).
    AwsIam,
}

/// Every asymmetric algorithm (the default when there is no discovery).
pub(crate) fn all_asymmetric() -> Vec<Algorithm> {
    ASYMMETRIC_ALGORITHMS
        .iter()
        .filter_map(|a| a.parse::<Algorithm>().ok())
        .collect()
}

/// True when the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    crate::config::is_loopback_url(url)
}

/// A URL spangate fetches from (discovery, JWKS, introspection) must be https,
/// or http to loopback, or http with the explicit opt-in.
pub(crate) fn check_fetch_url(url: &url::Url, allow_insecure_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) || allow_insecure_http => Ok(()),
        "http" => Err(format!(
            "{url}: plain http to a non-loopback host; use https or set allow_insecure_http: true"
        )),
        s => Err(format!("{url}: unsupported scheme {s:?}")),
    }
}

fn parse_url(label: &str, s: &str, insecure: bool, errors: &mut Vec<String>) -> Option<url::Url> {
    match url::Url::parse(s) {
        Ok(u) => {
            if let Err(e) = check_fetch_url(&u, insecure) {
                errors.push(format!("{label}: {e}"));
            }
            if u.cannot_be_a_base() || u.host().is_none() {
                errors.push(format!("{label}: {s:?} is not an absolute URL with a host"));
            }
            Some(u)
        }
        Err(e) => {
            errors.push(format!("{label}: {s:?} is not a URL: {e}"));
            None
        }
    }
}

/// Normalise a `typ` value: lowercase, without the `application/` prefix (RFC 7515 §4.1.9).
pub(crate) fn normalise_typ(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    t.strip_prefix("application/")
        .map(str::to_string)
        .unwrap_or(t)
}

/// Validate a provider config and apply its preset.
pub(crate) fn resolve(name: &str, cfg: &ProviderConfig) -> Result<ProviderSpec, Vec<String>> {
    let mut errors = Vec::new();
    let insecure = cfg.allow_insecure_http;
    let mut issuer = cfg.issuer.trim().to_string();
    if issuer.is_empty() {
        errors.push("issuer must not be empty".into());
    }
    if cfg.audiences.is_empty() {
        errors
            .push("audiences must not be empty (an empty audience would accept any token)".into());
    }
    if cfg.audiences.iter().any(|a| a.trim().is_empty()) {
        errors.push("audiences must not contain an empty string".into());
    }

    // Algorithms: asymmetric only.
    let mut algorithms = None;
    if !cfg.algorithms.is_empty() {
        let mut out = Vec::new();
        for a in &cfg.algorithms {
            if ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
                if let Ok(alg) = a.parse::<Algorithm>() {
                    out.push(alg);
                }
            } else {
                errors.push(format!(
                    "algorithms: {a:?} is not allowed (asymmetric only: {})",
                    ASYMMETRIC_ALGORITHMS.join(", ")
                ));
            }
        }
        algorithms = Some(out);
    }

    let mut required_claims = Vec::new();
    let mut required_names = std::collections::BTreeSet::new();
    for (claim, v) in &cfg.required_claims {
        let values = match v {
            serde_json::Value::Array(list) => list.clone(),
            other => vec![other.clone()],
        };
        if values.is_empty() {
            errors.push(format!(
                "required_claims.{claim}: empty list would match nothing"
            ));
        }
        if values.iter().any(|x| {
            matches!(
                x,
                serde_json::Value::Null
                    | serde_json::Value::Array(_)
                    | serde_json::Value::Object(_)
            )
        }) {
            errors.push(format!(
                "required_claims.{claim}: values must be strings, numbers or booleans (or a list of them)"
            ));
        }
        required_names.insert(claim.clone());
        required_claims.push((claim.clone(), values));
    }

    let require_typ = match &cfg.require_typ {
        Some(t) if t.trim().is_empty() => {
            errors.push("require_typ must not be empty".into());
            None
        }
        Some(t) => Some(normalise_typ(t)),
        None => None,
    };

    let mut audience_claim = cfg.audience_claim.clone();
    if let Some(c) = &audience_claim
        && c.trim().is_empty()
    {
        errors.push("audience_claim must not be empty".into());
    }

    if cfg.leeway > std::time::Duration::from_secs(600) {
        errors.push("leeway must be at most 10m".into());
    }
    if cfg.jwks_refresh_min.is_zero() {
        errors.push("jwks_refresh_min must be greater than zero".into());
    }
    if cfg.jwks_refresh_min > cfg.jwks_refresh_max {
        errors.push("jwks_refresh_min must not exceed jwks_refresh_max".into());
    }
    if cfg.rediscovery_interval.is_zero() || cfg.rediscovery_interval > MAX_REDISCOVERY_INTERVAL {
        errors.push("rediscovery_interval must be greater than zero and at most 24h".into());
    }
    if cfg.retry_initial.is_zero() || cfg.retry_initial > cfg.retry_max {
        errors.push("retry_initial must be greater than zero and at most retry_max".into());
    }
    if cfg.fetch_timeout.is_zero() {
        errors.push("fetch_timeout must be greater than zero".into());
    }
    if cfg.unknown_kid_cache_size == 0 {
        errors.push("unknown_kid_cache_size must be greater than zero".into());
    }
    if !(1024..=1024 * 1024).contains(&cfg.max_token_bytes) {
        errors.push("max_token_bytes must be between 1024 and 1048576".into());
    }

    let mut issuers = vec![];
    let mut extra_issuers: Vec<String> = Vec::new();
    // A JWKS location the IdP documents, used without discovery when the
    // config names none.
    let mut preset_jwks: Option<String> = None;

    // Presets.
    if let Some(preset) = cfg.preset {
        match preset {
            Preset::Okta => {
                if let Ok(u) = url::Url::parse(&issuer)
                    && !u.path().contains("/oauth2/")
                {
                    errors.push(format!(
                        "preset okta: {issuer:?} is the Okta org authorization server, whose access tokens are only for Okta's own APIs and cannot be verified by a third party; use a custom authorization server such as {}/oauth2/default",
                        issuer.trim_end_matches('/')
                    ));
                }
            }
            Preset::Auth0 => {
                // Auth0 sends `iss` with a trailing slash.
                if !issuer.ends_with('/') {
                    issuer.push('/');
                }
            }
            Preset::Entra => match entra_tenant(&issuer) {
                Some((tenant, v2_host)) => {
                    if ["common", "organizations", "consumers"].contains(&tenant.to_ascii_lowercase().as_str()) {
                        errors.push(format!(
                            "preset entra: tenant {tenant:?} is a multi-tenant alias; configure the tenant id"
                        ));
                    }
                    let v2 = format!("https://{v2_host}/{tenant}/v2.0");
                    let v1 = format!("https://sts.windows.net/{tenant}/");
                    issuer = v2;
                    extra_issuers.push(v1);
                    if algorithms.is_none() {
                        algorithms = Some(vec![Algorithm::RS256]);
                    }
                }
                None => errors.push(format!(
                    "preset entra: issuer {issuer:?} is neither https://login.microsoftonline.com/<tenant>/v2.0 nor https://sts.windows.net/<tenant>/"
                )),
            },
            Preset::Vercel => {
                // A loopback issuer stands in for Vercel in local development
                // and tests (`spangate dev`, the exporter's test suite).
                let ok = issuer == "https://oidc.vercel.com"
                    || issuer
                        .strip_prefix("https://oidc.vercel.com/")
                        .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
                    || url::Url::parse(&issuer).is_ok_and(|u| is_loopback(&u));
                if !ok {
                    errors.push(format!(
                        "preset vercel: issuer {issuer:?} must be https://oidc.vercel.com/<team_slug> (team) or https://oidc.vercel.com (global), or a loopback issuer for local development"
                    ));
                }
                if algorithms.is_none() {
                    algorithms = Some(vec![Algorithm::RS256]);
                }
                // Vercel documents its key set at <issuer>/.well-known/jwks;
                // its discovery document is minimal (no authorization
                // endpoint), so the keys are fetched from there directly.
                if issuer.starts_with("https://oidc.vercel.com") {
                    preset_jwks = Some(format!("{}/.well-known/jwks", issuer.trim_end_matches('/')));
                }
            }
            Preset::Cognito => {
                let ok = url::Url::parse(&issuer).ok().is_some_and(|u| {
                    let host_ok = u.host_str().is_some_and(|h| {
                        h.starts_with("cognito-idp.") && h.ends_with(".amazonaws.com")
                    });
                    let path = u.path().trim_start_matches('/');
                    host_ok && !path.is_empty() && !path.contains('/') && path.contains('_')
                });
                if !ok {
                    errors.push(format!(
                        "preset cognito: issuer {issuer:?} must be https://cognito-idp.<region>.amazonaws.com/<user_pool_id>"
                    ));
                }
                // Cognito access tokens carry the app client in `client_id`, not `aud`.
                if audience_claim.is_none() {
                    audience_claim = Some("client_id".into());
                }
                if !required_names.contains("token_use") {
                    required_claims.push(("token_use".into(), vec![serde_json::json!("access")]));
                }
                if algorithms.is_none() {
                    algorithms = Some(vec![Algorithm::RS256]);
                }
            }
            Preset::Keycloak => {
                let ok = url::Url::parse(&issuer).ok().is_some_and(|u| {
                    let segs: Vec<&str> = u.path().trim_matches('/').split('/').collect();
                    segs.len() >= 2
                        && segs[segs.len() - 2] == "realms"
                        && !segs[segs.len() - 1].is_empty()
                });
                if !ok {
                    errors.push(format!(
                        "preset keycloak: issuer {issuer:?} must be https://<host>/realms/<realm>"
                    ));
                }
            }
            Preset::Google => {
                if issuer != "https://accounts.google.com" {
                    errors.push(format!("preset google: issuer {issuer:?} must be https://accounts.google.com"));
                }
                // Google documents both forms of `iss` in its ID tokens.
                extra_issuers.push("accounts.google.com".into());
                if algorithms.is_none() {
                    algorithms = Some(vec![Algorithm::RS256]);
                }
            }
            Preset::AwsIam => {
                if algorithms.is_none() {
                    algorithms = Some(vec![Algorithm::RS256, Algorithm::ES384]);
                }
            }
        }
    }

    let issuer_url = parse_url("issuer", &issuer, insecure, &mut errors);
    let _ = issuer_url;
    let jwks_uri = cfg
        .jwks_uri
        .as_ref()
        .and_then(|j| parse_url("jwks_uri", j, insecure, &mut errors).map(|u| u.to_string()))
        .or(preset_jwks);

    issuers.push(issuer.clone());
    for extra in extra_issuers
        .into_iter()
        .chain(cfg.additional_issuers.iter().cloned())
    {
        if extra.trim().is_empty() {
            errors.push("additional_issuers must not contain an empty string".into());
        } else if !issuers.contains(&extra) {
            issuers.push(extra);
        }
    }

    let introspection = cfg.introspection.as_ref().and_then(|i| {
        if i.client_id.trim().is_empty() {
            errors.push("introspection.client_id must not be empty".into());
        }
        parse_url("introspection.endpoint", &i.endpoint, insecure, &mut errors).map(|u| {
            IntrospectionSpec {
                endpoint: u.to_string(),
                client_id: i.client_id.clone(),
                secret_source: i.client_secret.clone(),
                cache_ttl: i.cache_ttl,
            }
        })
    });

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ProviderSpec {
        name: name.to_string(),
        preset: cfg.preset,
        issuer,
        issuers,
        audiences: cfg.audiences.clone(),
        audience_claim: audience_claim.unwrap_or_else(|| "aud".into()),
        algorithms,
        leeway: cfg.leeway.as_secs(),
        required_claims,
        require_typ,
        jwks_uri,
        insecure_http: insecure,
        refresh_min: cfg.jwks_refresh_min,
        refresh_max: cfg.jwks_refresh_max,
        rediscovery_interval: cfg.rediscovery_interval,
        unknown_kid_interval: cfg.unknown_kid_refetch_interval,
        unknown_kid_cache_size: cfg.unknown_kid_cache_size,
        retry_initial: cfg.retry_initial,
        retry_max: cfg.retry_max,
        fetch_timeout: cfg.fetch_timeout,
        max_token_bytes: cfg.max_token_bytes,
        token_cache_ttl: cfg.token_cache_ttl,
        introspection,
    })
}

/// Tenant and v2 host of an Entra issuer (v1 or v2 form).
fn entra_tenant(issuer: &str) -> Option<(String, String)> {
    let u = url::Url::parse(issuer).ok()?;
    if u.scheme() != "https" {
        return None;
    }
    let host = u.host_str()?.to_string();
    let segs: Vec<&str> = u.path().trim_matches('/').split('/').collect();
    if host == "sts.windows.net" {
        match segs.as_slice() {
            [tenant] if !tenant.is_empty() => {
                Some((tenant.to_string(), "login.microsoftonline.com".into()))
            }
            _ => None,
        }
    } else {
        match segs.as_slice() {
            [tenant, "v2.0"] if !tenant.is_empty() => Some((tenant.to_string(), host)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(issuer: &str, preset: Option<Preset>) -> ProviderConfig {
        let mut c = ProviderConfig::new(issuer, vec!["api://spangate".into()]);
        c.preset = preset;
        c
    }

    #[test]
    fn audience_is_required() {
        let c = ProviderConfig::new("https://idp.example.com", vec![]);
        assert!(c.validate().iter().any(|e| e.contains("audiences")));
    }

    #[test]
    fn plain_http_only_for_loopback_or_opt_in() {
        assert!(
            cfg("http://idp.example.com", None)
                .validate()
                .iter()
                .any(|e| e.contains("plain http"))
        );
        assert!(cfg("http://127.0.0.1:8080", None).validate().is_empty());
        assert!(cfg("http://[::1]:8080", None).validate().is_empty());
        assert!(
            cfg("http://localhost:8080/realms/x", None)
                .validate()
                .is_empty()
        );
        let mut c = cfg("http://idp.example.com", None);
        c.allow_insecure_http = true;
        assert!(c.validate().is_empty());
        let mut c = cfg("https://idp.example.com", None);
        c.jwks_uri = Some("http://keys.example.com/jwks".into());
        assert!(c.validate().iter().any(|e| e.starts_with("jwks_uri")));
    }

    #[test]
    fn symmetric_algorithms_are_refused() {
        let mut c = cfg("https://idp.example.com", None);
        c.algorithms = vec!["HS256".into(), "none".into(), "RS256".into()];
        let errs = c.validate();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn okta_org_authorization_server_is_refused() {
        assert!(
            !cfg("https://acme.okta.com", Some(Preset::Okta))
                .validate()
                .is_empty()
        );
        assert!(
            cfg("https://acme.okta.com/oauth2/default", Some(Preset::Okta))
                .validate()
                .is_empty()
        );
        assert!(
            cfg("https://acme.okta.com/oauth2/aus1abc", Some(Preset::Okta))
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn auth0_issuer_gets_its_trailing_slash() {
        let s =
            resolve("a", &cfg("https://acme.us.auth0.com", Some(Preset::Auth0))).expect("valid");
        assert_eq!(s.issuer, "https://acme.us.auth0.com/");
        let s =
            resolve("a", &cfg("https://acme.us.auth0.com/", Some(Preset::Auth0))).expect("valid");
        assert_eq!(s.issuers, vec!["https://acme.us.auth0.com/".to_string()]);
    }

    #[test]
    fn entra_accepts_both_issuer_forms_of_one_tenant() {
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        for form in [
            format!("https://login.microsoftonline.com/{tid}/v2.0"),
            format!("https://sts.windows.net/{tid}/"),
        ] {
            let s = resolve("e", &cfg(&form, Some(Preset::Entra))).expect("valid");
            assert_eq!(
                s.issuer,
                format!("https://login.microsoftonline.com/{tid}/v2.0")
            );
            assert!(
                s.issuers
                    .contains(&format!("https://sts.windows.net/{tid}/"))
            );
        }
        assert!(
            !cfg(
                "https://login.microsoftonline.com/common/v2.0",
                Some(Preset::Entra)
            )
            .validate()
            .is_empty()
        );
        assert!(
            !cfg("https://example.com/x", Some(Preset::Entra))
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn vercel_team_and_global_issuers() {
        assert!(
            cfg("https://oidc.vercel.com/acme", Some(Preset::Vercel))
                .validate()
                .is_empty()
        );
        assert!(
            cfg("https://oidc.vercel.com", Some(Preset::Vercel))
                .validate()
                .is_empty()
        );
        assert!(
            !cfg("https://oidc.vercel.com/a/b", Some(Preset::Vercel))
                .validate()
                .is_empty()
        );
        assert!(
            !cfg("https://vercel.example.com", Some(Preset::Vercel))
                .validate()
                .is_empty()
        );
        let s = resolve(
            "v",
            &cfg("https://oidc.vercel.com/acme", Some(Preset::Vercel)),
        )
        .expect("valid");
        assert_eq!(s.algorithms, Some(vec![Algorithm::RS256]));
        assert_eq!(
            s.jwks_uri.as_deref(),
            Some("https://oidc.vercel.com/acme/.well-known/jwks")
        );
        // A loopback issuer (local development) uses discovery as usual.
        let s = resolve(
            "v",
            &cfg("http://127.0.0.1:8080/acme", Some(Preset::Vercel)),
        )
        .expect("loopback issuer is accepted");
        assert_eq!(s.jwks_uri, None);
    }

    #[test]
    fn cognito_checks_client_id_and_token_use() {
        let s = resolve(
            "c",
            &cfg(
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf",
                Some(Preset::Cognito),
            ),
        )
        .expect("valid");
        assert_eq!(s.audience_claim, "client_id");
        assert!(
            s.required_claims
                .iter()
                .any(|(c, v)| c == "token_use" && v == &vec![serde_json::json!("access")])
        );
        assert!(
            !cfg(
                "https://cognito-idp.eu-west-1.amazonaws.com/",
                Some(Preset::Cognito)
            )
            .validate()
            .is_empty()
        );
    }

    #[test]
    fn keycloak_and_google_issuer_shapes() {
        assert!(
            cfg(
                "https://sso.example.com/realms/acme",
                Some(Preset::Keycloak)
            )
            .validate()
            .is_empty()
        );
        assert!(
            cfg(
                "https://sso.example.com/auth/realms/acme",
                Some(Preset::Keycloak)
            )
            .validate()
            .is_empty()
        );
        assert!(
            !cfg("https://sso.example.com/acme", Some(Preset::Keycloak))
                .validate()
                .is_empty()
        );
        let s = resolve(
            "g",
            &cfg("https://accounts.google.com", Some(Preset::Google)),
        )
        .expect("valid");
        assert!(s.issuers.contains(&"accounts.google.com".to_string()));
        assert!(
            !cfg("https://google.com", Some(Preset::Google))
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn config_yaml_fields_parse() {
        let y = r#"
issuer: https://acme.okta.com/oauth2/default
audiences: [api://spangate]
preset: okta
algorithms: [RS256]
leeway: 10s
required_claims: { scp: [traces.write], tenant: acme }
require_typ: at+jwt
jwks_refresh_min: 1m
unknown_kid_refetch_interval: 10s
"#;
        let c: ProviderConfig = serde_yaml::from_str(y).expect("parses");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.leeway, std::time::Duration::from_secs(10));
        let bad: Result<ProviderConfig, _> =
            serde_yaml::from_str("issuer: x\naudiences: [a]\nbogus: 1\n");
        assert!(bad.is_err());
    }
}
