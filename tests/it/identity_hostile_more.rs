//! A wider hostile-token corpus. Every token here is refused with its exact
//! reason code; where it matters, the token is *validly signed* by the
//! issuer's real key (via `DevIdp::sign_compact`), so the refusal can only
//! come from the check under test. A few forms are accepted on purpose
//! (documented decisions: surrounding whitespace, lowercase `bearer`,
//! fractional NumericDates); those tests say so.

use crate::common;
use crate::identity_support;

use std::sync::Arc;

use base64::Engine;
use identity_support::*;
use serde_json::{Value, json};
use spangate::dev::idp::{DevIdp, DevKeyAlg};
use spangate::identity::{Identity, ProviderConfig};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;
const STD_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const URL_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE;

async fn setup(alg: DevKeyAlg) -> (DevIdp, Arc<Identity>) {
    let idp = idp(alg).await;
    let id = ready(one("dev", provider(&idp))).await;
    (idp, id)
}

/// The default header of the issuer's current key, as JSON text.
fn header_text(idp: &DevIdp, alg: &str) -> String {
    format!(
        r#"{{"alg":"{alg}","kid":"{}","typ":"at+jwt"}}"#,
        idp.current_kid()
    )
}

/// Good claims, as JSON text, with `extra` appended verbatim (`,"k":v`).
fn claims_text(idp: &DevIdp, extra: &str) -> String {
    format!(
        r#"{{"iss":"{}","aud":"{}","exp":{},"sub":"mallory"{extra}}}"#,
        idp.issuer(),
        idp.audience(),
        now() + 600
    )
}

/// Claims text without `exp`, with `extra` appended verbatim.
fn claims_text_no_exp(idp: &DevIdp, extra: &str) -> String {
    format!(
        r#"{{"iss":"{}","aud":"{}","sub":"mallory"{extra}}}"#,
        idp.issuer(),
        idp.audience()
    )
}

async fn refused(id: &Identity, token: &str, want: &str, label: &str) {
    match id.authenticate(token).await {
        Ok(p) => panic!("{label}: accepted (subject {:?})", p.subject),
        Err(e) => assert_eq!(e.reason(), want, "{label}"),
    }
}

async fn accepted(id: &Identity, token: &str, label: &str) {
    if let Err(e) = id.authenticate(token).await {
        panic!("{label}: refused with {}", e.reason());
    }
}

fn segments(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let h = it.next().unwrap_or_default().to_string();
    let p = it.next().unwrap_or_default().to_string();
    let s = it.next().unwrap_or_default().to_string();
    (h, p, s)
}

#[tokio::test]
async fn identity_hostile_duplicate_members_are_refused() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let kid = idp.current_kid();
    // Control: the same construction without duplicates verifies.
    let good = idp.sign_compact(
        header_text(&idp, "ES256").as_bytes(),
        claims_text(&idp, "").as_bytes(),
    );
    accepted(&id, &good, "control").await;

    let headers = [
        r#"{"alg":"ES256","alg":"none","kid":"KID"}"#,
        r#"{"alg":"none","alg":"ES256","kid":"KID"}"#,
        r#"{"alg":"ES256","kid":"other","kid":"KID"}"#,
        r#"{"alg":"ES256","kid":"KID","\u0061lg":"ES256"}"#,
        r#"{"alg":"ES256","kid":"KID","typ":"JWT","typ":"at+jwt"}"#,
        r#"{"alg":"ES256","kid":"KID","jwk":{"kty":"EC","kty":"oct"}}"#,
    ];
    for h in headers {
        let h = h.replace("KID", &kid);
        let t = idp.sign_compact(h.as_bytes(), claims_text(&idp, "").as_bytes());
        refused(&id, &t, "malformed", &h).await;
    }
    let extras = [
        r#","sub":"admin""#.to_string(),
        format!(r#","iss":"{}""#, idp.issuer()),
        r#","aud":"someone-else""#.to_string(),
        format!(r#","exp":{}"#, now() + 99_999),
        r#","groups":["dev"],"groups":["admin"]"#.to_string(),
        r#","realm_access":{"roles":["user"],"roles":["admin"]}"#.to_string(),
        r#","a":[{"x":1,"x":2}]"#.to_string(),
    ];
    for e in extras {
        let t = idp.sign_compact(
            header_text(&idp, "ES256").as_bytes(),
            claims_text(&idp, &e).as_bytes(),
        );
        refused(&id, &t, "malformed", &e).await;
    }
    assert_eq!(
        id.signature_verifications(),
        1,
        "only the control was verified"
    );
}

#[tokio::test]
async fn identity_hostile_segment_counts_are_malformed() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let good = idp.mint(json!({}));
    let (h, p, s) = segments(&good);
    let jwe_header = B64.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k"}"#);
    let cases = [
        ("JWE, 5 parts", format!("{jwe_header}.AAAA.BBBB.CCCC.DDDD")),
        ("JWE, empty key", format!("{jwe_header}..BBBB.CCCC.DDDD")),
        ("valid JWS + 2 parts", format!("{good}.{p}.{s}")),
        ("2 parts", format!("{h}.{p}")),
        ("4 parts", format!("{good}.{s}")),
        ("4 parts, trailing dot", format!("{good}.")),
        ("1 part", h.clone()),
        ("empty header", format!(".{p}.{s}")),
        ("empty payload", format!("{h}..{s}")),
        ("dots only", "..".to_string()),
        (
            "JWS JSON serialization",
            json!({"payload": p, "signatures": [{"protected": h, "signature": s}]}).to_string(),
        ),
    ];
    for (label, t) in cases {
        refused(&id, &t, "malformed", label).await;
    }
    assert_eq!(id.signature_verifications(), 0);
}

#[tokio::test]
async fn identity_hostile_signature_encodings_and_forgeries() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    // Base64 variants of a valid token: padding or the standard alphabet
    // make it "not a JWT" before anything is decoded.
    let mut checked_std = false;
    for _ in 0..50 {
        let good = idp.mint(json!({"n": uuid::Uuid::new_v4().to_string()}));
        let (h, p, s) = segments(&good);
        let raw_sig = B64.decode(&s).expect("b64");
        let std_sig = STD.encode(&raw_sig);
        if std_sig != s {
            refused(
                &id,
                &format!("{h}.{p}.{std_sig}"),
                "malformed",
                "standard alphabet",
            )
            .await;
            checked_std = true;
            break;
        }
    }
    assert!(checked_std, "50 signatures without + or / in them");
    let good = idp.mint(json!({}));
    let (h, p, s) = segments(&good);
    let raw_sig = B64.decode(&s).expect("b64");
    let raw_h = B64.decode(&h).expect("b64");
    let cases = [
        (
            "padded signature",
            format!("{h}.{p}.{}", URL_PAD.encode(&raw_sig)),
        ),
        (
            "standard padded signature",
            format!("{h}.{p}.{}", STD_PAD.encode(&raw_sig)),
        ),
        (
            "padded header",
            format!("{}.{p}.{s}", URL_PAD.encode(&raw_h)),
        ),
        ("token + '='", format!("{good}=")),
        ("token + '=='", format!("{good}==")),
    ];
    for (label, t) in &cases {
        // Some of these have no padding to add (length multiple of 3): skip those.
        if t.contains('=') {
            refused(&id, t, "malformed", label).await;
        }
    }
    assert_eq!(id.signature_verifications(), 0);

    // Decodable but wrong signatures: each reaches the signature check and fails.
    let der = {
        // ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (DER, RFC 3279).
        fn int(x: &[u8]) -> Vec<u8> {
            let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
            if v.first().is_some_and(|b| b & 0x80 != 0) {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        }
        let mut body = int(&raw_sig[..32]);
        body.extend(int(&raw_sig[32..]));
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    };
    let mut swapped = raw_sig[32..].to_vec();
    swapped.extend_from_slice(&raw_sig[..32]);
    let mut last_bit = raw_sig.clone();
    last_bit[63] ^= 1;
    let wrong = [
        ("empty signature", Vec::new()),
        ("DER instead of r||s", der),
        ("all-zero r||s (CVE-2022-21449)", vec![0u8; 64]),
        ("r||s swapped", swapped),
        ("one bit flipped", last_bit),
        ("truncated", raw_sig[..63].to_vec()),
        ("one byte extra", {
            let mut v = raw_sig.clone();
            v.push(0);
            v
        }),
        ("ES384-sized", vec![1u8; 96]),
    ];
    let before = id.signature_verifications();
    for (label, sig) in &wrong {
        refused(
            &id,
            &format!("{h}.{p}.{}", B64.encode(sig)),
            "bad_signature",
            label,
        )
        .await;
    }
    assert_eq!(id.signature_verifications(), before + wrong.len() as u64);
    // Non-canonical base64url: the last character's unused bits set.
    let mut chars: Vec<char> = s.chars().collect();
    let last = chars.len() - 1;
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(chars[last]).expect("b64url char");
    // 64 bytes -> 86 chars: the last char carries 2 data bits and 4 unused ones.
    chars[last] = alphabet.chars().nth(idx ^ 1).expect("char");
    let t = format!("{h}.{p}.{}", chars.iter().collect::<String>());
    refused(&id, &t, "bad_signature", "non-canonical signature").await;
    let mut hc: Vec<char> = h.chars().collect();
    let n = hc.len() - 1;
    if !hc.len().is_multiple_of(4) {
        let idx = alphabet.find(hc[n]).expect("b64url char");
        hc[n] = alphabet.chars().nth(idx ^ 1).expect("char");
        let t = format!("{}.{p}.{s}", hc.iter().collect::<String>());
        refused(&id, &t, "malformed", "non-canonical header").await;
    }
    accepted(&id, &good, "control").await;
}

#[tokio::test]
async fn identity_hostile_segments_that_are_not_json_objects() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let h = header_text(&idp, "ES256");
    let c = claims_text(&idp, "");
    let bad_headers: [(&str, Vec<u8>); 9] = [
        ("non-UTF-8", b"\xff\xfe\xfd".to_vec()),
        ("non-UTF-8 in a string", {
            let mut v = br#"{"alg":"ES256","kid":""#.to_vec();
            v.extend_from_slice(b"\xc3\x28");
            v.extend_from_slice(br#""}"#);
            v
        }),
        ("not JSON", b"alg=ES256".to_vec()),
        ("array", format!("[{h}]").into_bytes()),
        ("string", br#""{\"alg\":\"ES256\"}""#.to_vec()),
        ("number", b"256".to_vec()),
        ("null", b"null".to_vec()),
        ("BOM first", {
            let mut v = b"\xef\xbb\xbf".to_vec();
            v.extend_from_slice(h.as_bytes());
            v
        }),
        ("two objects", format!("{h}{h}").into_bytes()),
    ];
    for (label, bytes) in bad_headers {
        let t = idp.sign_compact(&bytes, c.as_bytes());
        refused(&id, &t, "malformed", label).await;
    }
    let bad_payloads: [(&str, Vec<u8>); 7] = [
        ("non-UTF-8", b"\x80\x81".to_vec()),
        ("not JSON", b"iss=me".to_vec()),
        ("array", format!("[{c}]").into_bytes()),
        ("string", b"\"sub\"".to_vec()),
        ("trailing garbage", format!("{c}x").into_bytes()),
        ("nested JWT as payload", idp.mint(json!({})).into_bytes()),
        ("deep nesting", {
            let mut v = c.trim_end_matches('}').to_string();
            v.push_str(&format!(
                r#","x":{}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ));
            v.into_bytes()
        }),
    ];
    for (label, bytes) in bad_payloads {
        let t = idp.sign_compact(h.as_bytes(), &bytes);
        refused(&id, &t, "malformed", label).await;
    }
    assert_eq!(id.signature_verifications(), 0);
    // Whitespace inside JSON is JSON: accepted.
    let spaced = format!(" {}\n", h.replace(',', " ,\t"));
    accepted(
        &id,
        &idp.sign_compact(spaced.as_bytes(), c.as_bytes()),
        "spaced JSON",
    )
    .await;
}

#[tokio::test]
async fn identity_hostile_kid_shapes() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let c = claims_text(&idp, "");
    for kid in ["5", "null", "true", "[\"KID\"]", "{\"kid\":\"KID\"}", "5.0"] {
        let kid = kid.replace("KID", &idp.current_kid());
        let h = format!(r#"{{"alg":"ES256","kid":{kid}}}"#);
        let t = idp.sign_compact(h.as_bytes(), c.as_bytes());
        refused(&id, &t, "malformed", &h).await;
    }
    let before = idp.jwks_fetches();
    let long = "k".repeat(10_000);
    let kids = [
        "../../../../etc/passwd".to_string(),
        "..\\..\\windows\\win.ini".to_string(),
        "https://attacker.example/jwks.json".to_string(),
        "".to_string(),
        "\u{0}".to_string(),
        format!("{}\u{0}", idp.current_kid()),
        format!("{} ", idp.current_kid()),
        idp.current_kid().to_uppercase(),
        "' OR '1'='1".to_string(),
        long,
    ];
    for kid in kids {
        let t = idp.mint_with_header(json!({"kid": kid}), json!({}));
        let label: String = kid.chars().take(40).collect();
        refused(&id, &t, "unknown_key", &label).await;
    }
    assert!(
        idp.jwks_fetches() - before <= 1,
        "one rate-limited refetch at most"
    );
    assert_eq!(id.signature_verifications(), 0);
}

#[tokio::test]
async fn identity_hostile_typ_when_enforced() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.require_typ = Some("at+jwt".into());
    let id = ready(one("dev", cfg)).await;
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let t = idp.mint_with_header(json!({"typ": typ}), json!({}));
        accepted(&id, &t, typ).await;
    }
    let bad = [
        json!(null),
        json!("JWT"),
        json!("jwt"),
        json!("at+jwt "),
        json!(" at+jwt"),
        json!("at+jwt\t"),
        json!("at+jwt; charset=utf-8"),
        json!("application/application/at+jwt"),
        json!("application/jwt"),
        json!("at-jwt"),
        json!("at+jwt\u{0}"),
        json!(""),
        json!(5),
        json!(["at+jwt"]),
        json!({"typ": "at+jwt"}),
        json!("JOSE"),
        json!("JOSE+JSON"),
        json!("dpop+jwt"),
        json!("secevent+jwt"),
    ];
    for typ in bad {
        let t = idp.mint_with_header(json!({"typ": typ}), json!({}));
        refused(&id, &t, "bad_type", &typ.to_string()).await;
    }
    // An explicit JSON null is not "absent".
    let h = format!(
        r#"{{"alg":"ES256","kid":"{}","typ":null}}"#,
        idp.current_kid()
    );
    let t = idp.sign_compact(h.as_bytes(), claims_text(&idp, "").as_bytes());
    refused(&id, &t, "bad_type", "typ: null").await;
}

#[tokio::test]
async fn identity_hostile_typ_default_rules() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    for typ in ["at+jwt", "JWT", "jwt", "application/jwt"] {
        accepted(
            &id,
            &idp.mint_with_header(json!({"typ": typ}), json!({})),
            typ,
        )
        .await;
    }
    accepted(
        &id,
        &idp.mint_with_header(json!({"typ": null}), json!({})),
        "absent",
    )
    .await;
    for typ in ["JOSE", "dpop+jwt", "JWT ", "", "logout+jwt"] {
        refused(
            &id,
            &idp.mint_with_header(json!({"typ": typ}), json!({})),
            "bad_type",
            typ,
        )
        .await;
    }
}

#[tokio::test]
async fn identity_hostile_numeric_dates() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let h = header_text(&idp, "ES256");
    let t = now();
    let sign = |claims: String| idp.sign_compact(h.as_bytes(), claims.as_bytes());
    let cases: Vec<(String, &str)> = vec![
        // exp
        (format!(r#","exp":"{}""#, t + 600), "bad_claims"),
        (r#","exp":"soon""#.into(), "bad_claims"),
        (r#","exp":-1"#.into(), "bad_claims"),
        (r#","exp":-0.5"#.into(), "bad_claims"),
        (r#","exp":-9223372036854775808"#.into(), "bad_claims"),
        (r#","exp":9223372036854775807"#.into(), "bad_claims"),
        (r#","exp":9223372036854775808"#.into(), "bad_claims"),
        (r#","exp":18446744073709551615"#.into(), "bad_claims"),
        (r#","exp":18446744073709551616"#.into(), "bad_claims"),
        (r#","exp":1e300"#.into(), "bad_claims"),
        (r#","exp":253402300800"#.into(), "bad_claims"),
        (r#","exp":1e400"#.into(), "malformed"),
        (r#","exp":true"#.into(), "bad_claims"),
        (r#","exp":null"#.into(), "bad_claims"),
        (r#","exp":[9999999999]"#.into(), "bad_claims"),
        (r#","exp":{"$date":9999999999}"#.into(), "bad_claims"),
        (r#","exp":0"#.into(), "expired"),
        (format!(r#","exp":{}.5"#, t - 3600), "expired"),
        (r#","exp":1.0e9"#.into(), "expired"),
        // missing exp
        (String::new(), "bad_claims"),
        // nbf
        (
            format!(r#","exp":{},"nbf":"{}""#, t + 600, t - 10),
            "bad_claims",
        ),
        (format!(r#","exp":{},"nbf":-1"#, t + 600), "bad_claims"),
        (
            format!(r#","exp":{},"nbf":18446744073709551616"#, t + 600),
            "bad_claims",
        ),
        (
            format!(r#","exp":{},"nbf":{}.25"#, t + 600, t + 3600),
            "not_yet_valid",
        ),
        (format!(r#","exp":{},"nbf":null"#, t + 600), "bad_claims"),
        // iat: not judged, but must be a NumericDate when present
        (format!(r#","exp":{},"iat":"now""#, t + 600), "bad_claims"),
        (format!(r#","exp":{},"iat":-5"#, t + 600), "bad_claims"),
        (
            format!(r#","exp":{},"iat":99999999999999"#, t + 600),
            "bad_claims",
        ),
    ];
    for (extra, want) in cases {
        let token = sign(claims_text_no_exp(&idp, &extra));
        refused(&id, &token, want, &extra).await;
    }
    // Fractional NumericDates are allowed by RFC 7519 §2 and read truncated.
    accepted(
        &id,
        &sign(claims_text_no_exp(
            &idp,
            &format!(r#","exp":{}.75,"nbf":{}.5,"iat":{}.5"#, t + 600, t - 5, t),
        )),
        "fractional dates",
    )
    .await;
    accepted(
        &id,
        &sign(claims_text_no_exp(
            &idp,
            &format!(r#","exp":{}e0"#, t + 600),
        )),
        "exponent form",
    )
    .await;
}

#[tokio::test]
async fn identity_hostile_audience_and_subject_shapes() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let aud = idp.audience();
    let bad = [
        json!(null),
        json!(5),
        json!(true),
        json!([]),
        json!([1, 2]),
        json!([null]),
        json!([[aud]]),
        json!([aud, 5]),
        json!({"aud": aud}),
        json!(""),
        json!(aud.to_uppercase()),
        json!(format!("{aud} ")),
        json!(format!(" {aud}")),
        json!(format!("{aud}\u{0}")),
        json!(format!("{aud},other")),
        json!(format!("{aud} other")),
    ];
    for a in bad {
        let t = idp.mint(json!({ "aud": a }));
        refused(&id, &t, "bad_audience", &a.to_string()).await;
    }
    accepted(&id, &idp.mint(json!({ "aud": [aud] })), "[aud]").await;
    accepted(
        &id,
        &idp.mint(json!({ "aud": ["other", aud] })),
        "[other, aud]",
    )
    .await;
    for sub in [
        json!(5),
        json!(["admin"]),
        json!({"id": "admin"}),
        json!(true),
    ] {
        let t = idp.mint(json!({ "sub": sub }));
        refused(&id, &t, "bad_claims", &sub.to_string()).await;
    }
}

#[tokio::test]
async fn identity_hostile_issuer_must_match_exactly() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let iss = idp.issuer();
    let bad = [
        json!(format!("{iss}/")),
        json!(iss.replace("http://", "HTTP://")),
        json!(iss.replace("http://", "https://")),
        json!(iss.replace("127.0.0.1", "localhost")),
        json!(iss.replace("127.0.0.1", "127.000.000.001")),
        json!(format!("{iss}/.")),
        json!(format!("{iss}#")),
        json!(format!("{iss}?")),
        json!(format!(" {iss}")),
        json!(format!("{iss} ")),
        json!(format!("{iss}\u{0}")),
        json!(""),
        json!(null),
        json!(5),
        json!([iss]),
        json!({"iss": iss}),
    ];
    for i in bad {
        let t = idp.mint(json!({ "iss": i }));
        refused(&id, &t, "bad_issuer", &i.to_string()).await;
    }
    assert_eq!(id.signature_verifications(), 0);
}

#[tokio::test]
async fn identity_hostile_algorithm_confusion() {
    // ES256 key, header claiming ES384 (provider allows both).
    let idp = idp(DevKeyAlg::Es256).await;
    let mut plain = idp.current_public_jwk();
    if let Some(o) = plain.as_object_mut() {
        o.remove("alg");
        o.insert("kid".into(), json!("es-no-alg"));
    }
    idp.publish_jwk(plain);
    let mut labelled = idp.current_public_jwk();
    labelled["kid"] = json!("labelled-es384");
    labelled["alg"] = json!("ES384");
    idp.publish_jwk(labelled);
    let mut cfg = provider(&idp);
    cfg.algorithms = vec![
        "ES256".into(),
        "ES384".into(),
        "RS256".into(),
        "PS256".into(),
    ];
    let id = ready(one("dev", cfg)).await;
    for (kid, alg, want) in [
        (idp.current_kid(), "ES384", "alg_not_allowed"),
        ("es-no-alg".to_string(), "ES384", "alg_not_allowed"),
        ("es-no-alg".to_string(), "RS256", "alg_not_allowed"),
        ("es-no-alg".to_string(), "PS256", "alg_not_allowed"),
        // The JWK says ES384 but the token (and the curve) say ES256.
        ("labelled-es384".to_string(), "ES256", "alg_not_allowed"),
        ("labelled-es384".to_string(), "ES384", "alg_not_allowed"),
    ] {
        let t = idp.mint_with_header(json!({"alg": alg, "kid": kid}), json!({}));
        refused(&id, &t, want, &format!("{kid} as {alg}")).await;
    }
    // The key without `alg` still verifies what it really is.
    accepted(
        &id,
        &idp.mint_with_header(json!({"kid": "es-no-alg"}), json!({})),
        "es-no-alg as ES256",
    )
    .await;

    // RS256 <-> PS256 swaps.
    for (key_alg, claimed) in [(DevKeyAlg::Rs256, "PS256"), (DevKeyAlg::Ps256, "RS256")] {
        let idp = identity_support::idp(key_alg).await;
        let mut plain = idp.current_public_jwk();
        if let Some(o) = plain.as_object_mut() {
            o.remove("alg");
            o.insert("kid".into(), json!("rsa-no-alg"));
        }
        idp.publish_jwk(plain);
        let mut cfg = provider(&idp);
        cfg.algorithms = vec!["RS256".into(), "PS256".into()];
        let id = ready(one("dev", cfg)).await;
        let t = idp.mint_with_header(json!({ "alg": claimed }), json!({}));
        refused(&id, &t, "alg_not_allowed", "JWK alg disagrees").await;
        // Without `alg` on the JWK, the signature scheme itself refuses.
        let t = idp.mint_with_header(json!({"alg": claimed, "kid": "rsa-no-alg"}), json!({}));
        refused(&id, &t, "bad_signature", "padding scheme swapped").await;
        accepted(&id, &idp.mint(json!({})), "control").await;
    }
}

/// EMSA-PKCS1-v1_5 encoding of SHA-256(msg) for a `k`-byte modulus.
fn pkcs1_sha256(msg: &[u8], k: usize) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg);
    let t_len = PREFIX.len() + digest.as_ref().len();
    let mut em = vec![0x00, 0x01];
    em.extend(std::iter::repeat_n(0xff, k - t_len - 3));
    em.push(0);
    em.extend_from_slice(&PREFIX);
    em.extend_from_slice(digest.as_ref());
    em
}

#[tokio::test]
async fn identity_hostile_key_sets_never_lend_a_key() {
    let (_guard, logs) = capture_logs();
    let idp = idp(DevKeyAlg::Es256).await;
    // Copies of the real public key under other kids, each with a property
    // that forbids verification: a token signed by the real key would verify
    // if any of them were used.
    let copy = |kid: &str, field: &str, v: Value| {
        let mut j = idp.current_public_jwk();
        j["kid"] = json!(kid);
        if v.is_null() {
            if let Some(o) = j.as_object_mut() {
                o.remove(field);
            }
        } else {
            j[field] = v;
        }
        j
    };
    let forbidden = [
        copy("use-enc", "use", json!("enc")),
        copy("use-odd", "use", json!("sig ")),
        copy("ops-encrypt", "key_ops", json!(["encrypt", "wrapKey"])),
        copy("ops-sign", "key_ops", json!(["sign"])),
        copy("ops-empty", "key_ops", json!([])),
        copy("ops-string", "key_ops", json!("verify")),
        copy("alg-rsa", "alg", json!("RS256")),
        copy("alg-hmac", "alg", json!("HS256")),
        copy("alg-none", "alg", json!("none")),
        copy("crv-p384", "crv", json!("P-384")),
        copy("kty-oct", "kty", json!("oct")),
    ];
    for j in forbidden.iter().cloned() {
        idp.publish_jwk(j);
    }
    idp.publish_jwk(copy("ops-verify", "key_ops", json!(["verify"])));

    // A 1024-bit RSA modulus (top bit set): too small, ignored with a warning.
    let mut n = vec![0u8; 128];
    aws_lc_rs::rand::fill(&mut n).expect("rng");
    n[0] |= 0x80;
    n[127] |= 1;
    idp.publish_jwk(
        json!({"kty": "RSA", "kid": "weak-1024", "use": "sig", "n": B64.encode(&n), "e": "AQAB"}),
    );
    // A real 2048-bit modulus with e = 1: every message is its own signature.
    let kp =
        aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let c = {
        use aws_lc_rs::signature::KeyPair;
        aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key())
    };
    idp.publish_jwk(json!({"kty": "RSA", "kid": "rsa-e1", "n": B64.encode(&c.n), "e": "AQ"}));
    // The Ed25519 identity point (small order): (R = identity, S = 0) verifies anything.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    idp.publish_jwk(
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-small", "x": B64.encode(identity_point)}),
    );
    // An EC point that is not on P-256.
    let mut off = idp.current_public_jwk();
    let mut y = B64.decode(off["y"].as_str().expect("y")).expect("b64");
    y[31] ^= 1;
    off["y"] = json!(B64.encode(&y));
    off["kid"] = json!("off-curve");
    idp.publish_jwk(off);

    let mut cfg = provider(&idp);
    cfg.algorithms = vec!["ES256".into(), "RS256".into(), "EdDSA".into()];
    let id = ready(one("dev", cfg)).await;
    assert_eq!(id.status()[0].keys, 2, "the real key and ops-verify only");

    for j in &forbidden {
        let kid = j["kid"].as_str().expect("kid");
        let t = idp.mint_with_header(json!({ "kid": kid }), json!({}));
        refused(&id, &t, "unknown_key", kid).await;
    }
    accepted(
        &id,
        &idp.mint_with_header(json!({"kid": "ops-verify"}), json!({})),
        "ops-verify",
    )
    .await;
    let t = idp.mint_with_header(json!({"kid": "off-curve"}), json!({}));
    refused(&id, &t, "unknown_key", "off-curve").await;

    // Forgeries that would pass if the degenerate keys were loaded.
    let claims = claims_text(&idp, "");
    let h = r#"{"alg":"RS256","kid":"rsa-e1"}"#;
    let input = format!("{}.{}", B64.encode(h), B64.encode(&claims));
    let forged = format!(
        "{input}.{}",
        B64.encode(pkcs1_sha256(input.as_bytes(), c.n.len()))
    );
    refused(&id, &forged, "unknown_key", "RSA e = 1 forgery").await;
    let h = r#"{"alg":"EdDSA","kid":"ed-small"}"#;
    let input = format!("{}.{}", B64.encode(h), B64.encode(&claims));
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let forged = format!("{input}.{}", B64.encode(sig));
    refused(&id, &forged, "unknown_key", "small-order Ed25519 forgery").await;
    let h = r#"{"alg":"RS256","kid":"weak-1024"}"#;
    let t = format!(
        "{}.{}.{}",
        B64.encode(h),
        B64.encode(&claims),
        B64.encode([7u8; 128])
    );
    refused(&id, &t, "unknown_key", "1024-bit key").await;

    // Broken or dangerous keys are logged at WARN with their kid; keys that
    // are normal in a real JWKS (encryption keys) at DEBUG only.
    let text = logs.text();
    let logged = |level: &str, kid: &str| {
        text.lines().any(|l| {
            l.contains(level)
                && l.contains("JWKS key ignored")
                && l.contains(&format!("kid={kid} "))
        })
    };
    for kid in [
        "weak-1024",
        "rsa-e1",
        "ed-small",
        "off-curve",
        "alg-rsa",
        "alg-hmac",
        "kty-oct",
        "crv-p384",
    ] {
        assert!(logged("WARN", kid), "no WARN naming {kid}:\n{text}");
    }
    for kid in ["use-enc", "ops-encrypt", "ops-sign"] {
        assert!(logged("DEBUG", kid), "no DEBUG naming {kid}:\n{text}");
        assert!(!logged("WARN", kid), "{kid} is routine, not a warning");
    }
    assert!(text.contains("RSA key under 2048 bits"));
}

#[tokio::test]
async fn identity_hostile_crit_b64_and_nested_tokens() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let unsupported = [
        json!({"crit": []}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"b64": false}),
        json!({"b64": "false"}),
        json!({"b64": 0}),
        json!({"b64": null}),
        json!({"crit": "exp"}),
        json!({"crit": null}),
    ];
    for h in unsupported {
        let t = if h.get("b64") == Some(&Value::Null) || h.get("crit") == Some(&Value::Null) {
            // mint_with_header drops nulls: write the header by hand.
            let mut m = serde_json::Map::new();
            m.insert("alg".into(), json!("ES256"));
            m.insert("kid".into(), json!(idp.current_kid()));
            if let Some(o) = h.as_object() {
                m.extend(o.clone());
            }
            idp.sign_compact(
                Value::Object(m).to_string().as_bytes(),
                claims_text(&idp, "").as_bytes(),
            )
        } else {
            idp.mint_with_header(h.clone(), json!({}))
        };
        refused(&id, &t, "unsupported_crit", &h.to_string()).await;
    }
    accepted(
        &id,
        &idp.mint_with_header(json!({"b64": true}), json!({})),
        "b64: true is the default",
    )
    .await;
    // A JWT inside a JWT is never unwrapped.
    let inner = idp.mint(json!({"sub": "inner"}));
    for cty in ["JWT", "jwt", "application/jwt", "Application/JWT"] {
        let h = format!(
            r#"{{"alg":"ES256","kid":"{}","cty":"{cty}"}}"#,
            idp.current_kid()
        );
        let nested = idp.sign_compact(h.as_bytes(), inner.as_bytes());
        refused(&id, &nested, "bad_type", cty).await;
        let t = idp.mint_with_header(json!({ "cty": cty }), json!({}));
        refused(&id, &t, "bad_type", cty).await;
    }
    assert_eq!(id.signature_verifications(), 1);
}

#[tokio::test]
async fn identity_hostile_whitespace_around_and_inside() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let good = idp.mint(json!({"sub": "ws"}));
    accepted(&id, &good, "control").await;
    let verified = id.signature_verifications();
    // Surrounding whitespace is trimmed (HTTP optional whitespace), and the
    // trimmed token is what is hashed: the same cache entry serves it.
    for t in [
        format!(" {good}"),
        format!("{good} "),
        format!("\t{good}\t"),
        format!("  {good}\r\n"),
    ] {
        accepted(&id, &t, "surrounding whitespace").await;
    }
    assert_eq!(id.signature_verifications(), verified);
    // Whitespace inside the token is never part of a JWT.
    let (h, p, s) = segments(&good);
    for t in [
        format!("{h} .{p}.{s}"),
        format!("{h}. {p}.{s}"),
        format!("{h}.{p}.{}\n{}", &s[..10], &s[10..]),
        format!("{h}.{p}\t.{s}"),
        format!("{}\u{a0}{}.{p}.{s}", &h[..4], &h[4..]),
        format!("{h}.{p}.{s}\u{200b}"),
    ] {
        refused(&id, &t, "malformed", &format!("{t:?}")).await;
    }
    refused(&id, "   ", "missing", "blank").await;
}

/// A token for `idp` exactly `len` bytes long (padding a claim and a header field).
fn token_of_len(idp: &DevIdp, len: usize) -> String {
    let base = idp.mint(json!({"pad": ""})).len();
    let estimate = (len.saturating_sub(base)) * 3 / 4;
    for hpad in 0..4 {
        for pad in estimate.saturating_sub(8)..estimate + 8 {
            let t = idp.mint_with_header(
                json!({"x": "h".repeat(hpad)}),
                json!({"pad": "p".repeat(pad)}),
            );
            if t.len() == len {
                return t;
            }
        }
    }
    panic!("no token of exactly {len} bytes");
}

#[tokio::test]
async fn identity_hostile_size_cap_boundaries() {
    let (idp, id) = setup(DevKeyAlg::Es256).await;
    let cap = spangate::identity::DEFAULT_MAX_TOKEN_BYTES;
    accepted(&id, &token_of_len(&idp, cap - 1), "one byte under the cap").await;
    let at = token_of_len(&idp, cap);
    assert_eq!(at.len(), cap);
    accepted(&id, &at, "exactly at the cap").await;
    let over = token_of_len(&idp, cap + 1);
    refused(&id, &over, "too_large", "one byte over").await;
    // Whitespace does not smuggle a large token past the cap, nor does it count.
    refused(&id, &format!(" {over} "), "too_large", "over, padded").await;
    accepted(&id, &format!("  {at}  "), "at, padded").await;

    // A provider with a smaller cap.
    let idp = identity_support::idp(DevKeyAlg::Es256).await;
    let mut cfg: ProviderConfig = provider(&idp);
    cfg.max_token_bytes = 2048;
    let id = ready(one("small", cfg)).await;
    accepted(&id, &token_of_len(&idp, 2048), "2048").await;
    let before = id.signature_verifications();
    refused(&id, &token_of_len(&idp, 2049), "too_large", "2049").await;
    assert_eq!(id.signature_verifications(), before);
}

#[tokio::test]
async fn identity_hostile_bearer_forms_through_the_proxy() {
    let h = common::Harness::start_with(common::Options {
        policies: Some(common::shipped_policies_unthrottled()),
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    let body = || spangate::dev::sample_batch_json("checkout", 1);
    let send = |auth: String| {
        let h = &h;
        async move {
            h.post(
                "/v1/traces",
                None,
                "application/json",
                body(),
                &[("authorization", auth.as_str())],
            )
            .await
            .status()
            .as_u16()
        }
    };
    // RFC 7235: the scheme is case-insensitive and 1*SP separates it.
    for auth in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("bEaReR {token}"),
        format!("Bearer  {token}"),
        format!("Bearer {token} "),
    ] {
        assert_eq!(send(auth.clone()).await, 200, "{}", &auth[..9]);
    }
    let forwarded = h.upstream.received().len();
    for (auth, want) in [
        (format!("Bearer\t{token}"), "malformed"),
        (format!("Bearer{token}"), "malformed"),
        (format!("Bearer {token} extra"), "malformed"),
        (format!("Bearer {token},{token}"), "malformed"),
        (format!("Bearer \"{token}\""), "malformed"),
        // The trailing space is optional whitespace: the header is "Bearer".
        ("Bearer ".to_string(), "malformed"),
    ] {
        assert_eq!(send(auth.clone()).await, 401, "{auth:.12}");
        assert_eq!(h.last_audit()["reason"], want, "{auth:.12}");
    }
    assert_eq!(
        h.upstream.received().len(),
        forwarded,
        "nothing refused was forwarded"
    );
    h.stop().await;
}

#[tokio::test]
async fn identity_hostile_nothing_is_forwarded_through_the_proxy() {
    let h = common::Harness::start().await;
    let good = h.token("edge-prod");
    let (hd, p, s) = segments(&good);
    let dup = h.idp.sign_compact(
        format!(
            r#"{{"alg":"none","alg":"ES256","kid":"{}"}}"#,
            h.idp.current_kid()
        )
        .as_bytes(),
        &B64.decode(&p).expect("b64"),
    );
    let cases = [
        (dup, "malformed"),
        (
            format!("{hd}.{p}.{}", B64.encode([0u8; 64])),
            "bad_signature",
        ),
        (format!("{hd}.{p}"), "malformed"),
        (format!("{good}.{s}.{s}"), "malformed"),
        (
            h.idp
                .mint_with_header(json!({"cty": "JWT"}), json!({"sub": "x"})),
            "bad_type",
        ),
    ];
    for (t, want) in cases {
        let resp = h.send_json(Some(&t), "checkout").await;
        assert_eq!(resp.status(), 401, "{want}");
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_eq!(h.last_audit()["reason"], want);
    }
    assert!(h.upstream.received().is_empty());
    assert_eq!(h.send_json(Some(&good), "checkout").await.status(), 200);
    h.stop().await;
}
