//! Byte sizes in config and policy files: a plain number of bytes or a
//! number with a unit (`16MiB`, `512KiB`, `1GB`), parsed by `bytesize`.
//! A bad value names the accepted forms instead of serde's generic
//! "expected parsable string".

use std::fmt;

use bytesize::ByteSize;
use serde::Deserializer;
use serde::de::{self, Visitor};

/// The accepted forms, for messages.
pub const FORMS: &str = "a plain number of bytes or a number with a unit, e.g. 16MiB, 512KiB, 1GB";

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a size ({FORMS})")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize::b(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize::b)
            .map_err(|_| E::custom(format!("invalid size {v}: expected {FORMS}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.trim()
            .parse::<ByteSize>()
            .map_err(|_| E::custom(format!("invalid size {v:?}: expected {FORMS}")))
    }
}

/// `#[serde(deserialize_with = "crate::config::size::deserialize")]`
pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<ByteSize, D::Error> {
    de.deserialize_any(SizeVisitor)
}

/// The same for an optional size.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<ByteSize>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<ByteSize>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a size ({FORMS}) or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            deserialize(de).map(Some)
        }
    }
    de.deserialize_option(Opt)
}

#[cfg(test)]
mod tests {
    use bytesize::ByteSize;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::deserialize")]
        size: ByteSize,
        #[serde(default, deserialize_with = "super::deserialize_opt")]
        opt: Option<ByteSize>,
    }

    fn parse(yaml: &str) -> Result<T, String> {
        serde_yaml::from_str::<T>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn accepted_forms() {
        for (text, bytes) in [
            ("16MiB", 16 << 20),
            ("512KiB", 512 << 10),
            ("1GB", 1_000_000_000),
            ("1024", 1024),
            ("\"2048\"", 2048),
            ("16 MiB", 16 << 20),
        ] {
            let t = parse(&format!("size: {text}")).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.size.as_u64(), bytes, "{text}");
            assert!(t.opt.is_none());
        }
        assert_eq!(
            parse("size: 1\nopt: 4MiB").unwrap().opt,
            Some(ByteSize::mib(4))
        );
        assert_eq!(parse("size: 1\nopt: null").unwrap().opt, None);
    }

    #[test]
    fn bad_sizes_name_the_accepted_forms() {
        for bad in ["16 megs", "-1", "1.5.5MB", "[1]", "{a: 1}", "MiB"] {
            let e = parse(&format!("size: {bad}")).err().unwrap_or_default();
            assert!(e.contains("16MiB, 512KiB, 1GB"), "{bad}: {e}");
            let e = parse(&format!("size: 1\nopt: {bad}"))
                .err()
                .unwrap_or_default();
            assert!(e.contains("16MiB, 512KiB, 1GB"), "{bad}: {e}");
        }
    }
}
