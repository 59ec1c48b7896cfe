//! Write the generated seed files of the committed corpora (run once from
//! `fuzz/`: `cargo run --example seeds`; it overwrites only its own files):
//! OTLP protobuf/gzip variants of the JS exporter fixture for `otlp_decode`,
//! and real tokens signed by the fixed fuzz keys for `jwt_verify`.

use std::path::Path;

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use serde_json::{Value, json};
use spangate::otlp::{self, Encoding};
use spangate_fuzz::jwt::{
    ALT_ISSUER, AUDIENCE, COGNITO_CLIENT, COGNITO_ISSUER, ISSUER, Keys, SEED_EXP, Signer,
    TokenSpec, now_secs, verifiers,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");

    let json_body =
        std::fs::read(root.join("../tests/it/fixtures/otlp_js_exporter.json")).expect("fixture");
    let batch =
        otlp::decode(Encoding::Json, Bytes::from(json_body.clone())).expect("fixture decodes");
    let proto = otlp::encode_request(Encoding::Protobuf, &batch.request);
    let dir = corpus.join("otlp_decode");
    // First byte: 0 protobuf, 1 JSON, 2 gzip protobuf, 5 gzip JSON.
    let with = |sel: u8, body: &[u8]| [&[sel][..], body].concat();
    write(&dir, "js-exporter-protobuf", &with(0, &proto));
    write(&dir, "js-exporter-json", &with(1, &json_body));
    write(
        &dir,
        "js-exporter-protobuf-gzip",
        &with(2, &otlp::gzip(&proto, 6)),
    );
    write(
        &dir,
        "js-exporter-json-gzip",
        &with(5, &otlp::gzip(&json_body, 6)),
    );

    // otlp_wire: first byte = signal | stamp 4 | protect 8 | drop mask << 4.
    let dir = corpus.join("otlp_wire");
    write(&dir, "traces-js-exporter", &with(0, &proto));
    write(&dir, "traces-js-exporter-stamp-protect", &with(0x0c, &proto));
    write(&dir, "traces-js-exporter-drop-first", &with(0x1c, &proto));
    write(&dir, "metrics-every-kind", &with(0x0d, &wire_seeds::metrics()));
    write(&dir, "logs-two-resources", &with(0x2e, &wire_seeds::logs()));

    let keys = Keys::load();
    let dir = corpus.join("jwt_verify");
    let main_claims = |extra: Value| {
        let mut c = json!({"iss": ISSUER, "sub": "seed", "aud": AUDIENCE, "tier": "gold",
            "exp": SEED_EXP, "iat": 1_700_000_000u64});
        if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
            c.extend(e);
        }
        c
    };
    let token = |signer: Signer, header: Value, claims: Value| {
        keys.token(
            signer,
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    };
    let std_header = |s: Signer| match s.kid() {
        Some(kid) => json!({"alg": s.alg(), "typ": "JWT", "kid": kid}),
        None => json!({"alg": s.alg(), "typ": "JWT"}),
    };
    for s in [
        Signer::Es256,
        Signer::Es384,
        Signer::Rs256,
        Signer::Ps256,
        Signer::EdDsa,
        Signer::Es256NoKid,
    ] {
        let name = format!("valid-{}", s.alg().to_ascii_lowercase());
        let name = if s == Signer::Es256NoKid {
            "ambiguous-es256-no-kid".into()
        } else {
            name
        };
        write(
            &dir,
            &name,
            token(s, std_header(s), main_claims(json!({}))).as_bytes(),
        );
    }
    let cognito = json!({"iss": COGNITO_ISSUER, "sub": "seed", "client_id": COGNITO_CLIENT,
        "token_use": "access", "exp": SEED_EXP});
    write(
        &dir,
        "valid-cognito-rs256-no-kid",
        token(Signer::Rs256, json!({"alg": "RS256"}), cognito).as_bytes(),
    );
    write(
        &dir,
        "valid-alt-issuer-at-jwt",
        token(
            Signer::EdDsa,
            json!({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}),
            main_claims(json!({"iss": ALT_ISSUER, "aud": ["other", "api://spangate"]})),
        )
        .as_bytes(),
    );
    write(
        &dir,
        "expired",
        token(
            Signer::Es256,
            std_header(Signer::Es256),
            main_claims(json!({"exp": 1_000_000_000u64})),
        )
        .as_bytes(),
    );
    write(
        &dir,
        "wrong-audience",
        token(
            Signer::Es256,
            std_header(Signer::Es256),
            main_claims(json!({"aud": "someone-else"})),
        )
        .as_bytes(),
    );
    write(
        &dir,
        "hs256-with-hmac-kid",
        token(
            Signer::Es256,
            json!({"alg": "HS256", "kid": "hmac"}),
            main_claims(json!({})),
        )
        .as_bytes(),
    );
    write(
        &dir,
        "crit-header",
        token(
            Signer::Es256,
            json!({"alg": "ES256", "kid": "es256", "crit": ["b64"], "b64": false}),
            main_claims(json!({})),
        )
        .as_bytes(),
    );
    write(
        &dir,
        "alg-none",
        format!(
            "{}.",
            token(
                Signer::Es256,
                json!({"alg": "none"}),
                main_claims(json!({}))
            )
            .rsplit_once('.')
            .map_or(String::new(), |(a, _)| a.to_string())
        )
        .as_bytes(),
    );

    // What each seed token does (valid ones must verify), and the token an
    // all-default structured input builds (it must verify too).
    let v = verifiers();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("seeds")
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names {
        let token = std::fs::read_to_string(&path).expect("seed");
        let result = v
            .authenticate(&token)
            .map(|p| p.subject)
            .map_err(|e| e.reason());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("jwt_verify/{name}: {result:?}");
        assert_eq!(name.starts_with("valid-"), result.is_ok(), "{name}");
    }
    let spec = TokenSpec::arbitrary(&mut Unstructured::new(&[])).expect("default spec");
    let built = spec.build(&v.keys, now_secs());
    let result = v
        .authenticate(&built.token)
        .map(|p| p.subject)
        .map_err(|e| e.reason());
    println!("jwt_structured/<empty input>: {result:?}");
    assert!(result.is_ok());
}

/// Metrics and logs requests covering every data point kind, exemplars,
/// log record ids and protected attributes.
mod wire_seeds {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            key_strindex: 0,
        }
    }

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", service), kv("spangate.subject", "forged")],
            ..Default::default()
        })
    }

    pub fn metrics() -> Vec<u8> {
        let point = || NumberDataPoint {
            attributes: vec![kv("k", "v"), kv("host", "a")],
            exemplars: vec![Exemplar {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                ..Default::default()
            }],
            ..Default::default()
        };
        let metric = |data| Metric {
            name: "m".into(),
            data: Some(data),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource("api"),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(metric::Data::Gauge(Gauge {
                            data_points: vec![point(), point()],
                        })),
                        metric(metric::Data::Sum(Sum {
                            data_points: vec![point()],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        metric(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv("k", "v")],
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![1.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        metric(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                attributes: vec![kv("spangate.x", "y")],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        metric(metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                attributes: vec![kv("k", "v")],
                                ..Default::default()
                            }],
                        })),
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }

    pub fn logs() -> Vec<u8> {
        let record = |i: u8| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("hello".into())),
            }),
            attributes: vec![kv("k", "v"), kv("spangate.q", "x")],
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            ..Default::default()
        };
        let rl = |service: &str| ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(1), record(2)],
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![rl("batch"), rl("cron")],
        }
        .encode_to_vec()
    }
}
