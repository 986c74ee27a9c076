//! What a search may ask (spec flows.md F24): filters that are all AND-ed, a page size and an
//! opaque cursor. Raw request values are checked here so bad input is a clear 400 before any
//! SQL runs.
//!
//! Results come newest first, ordered by (creation time, order id) — a total order, so a cursor
//! holding the last row's pair continues exactly where the page ended, even when orders keep
//! arriving.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::OrderStatus;

/// Page size when the request gives none (or 0, protobuf's "unset").
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page; a larger `limit` is lowered to it.
pub const MAX_LIMIT: i64 = 100;

/// Why a search request is refused. The texts are the 400 messages clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A time filter is not RFC 3339.
    #[error(
        "invalid filters.{field} {value:?}: expected an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"
    )]
    BadTime {
        /// `after` or `before`.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// `after` is not before `before`: nothing could match.
    #[error("filters.after must be earlier than filters.before")]
    EmptyPeriod,
    /// A total bound is NaN or infinite.
    #[error("filters.{0} must be a finite number")]
    BadTotal(&'static str),
    /// `minTotal` above `maxTotal`: nothing could match.
    #[error("filters.minTotal cannot be greater than filters.maxTotal")]
    EmptyTotalRange,
    /// Not one of the statuses the read model uses.
    #[error(
        "invalid filters.status {0:?}: expected one of New, Approved, Rejected, Ready For Pickup, Canceled, Completed"
    )]
    BadStatus(String),
    /// A negative page size.
    #[error("the limit cannot be negative")]
    NegativeLimit,
    /// A cursor we did not issue (or one that was altered).
    #[error("invalid next cursor {0:?}: pass back the next value of a previous answer")]
    BadCursor(String),
}

/// The filters of a search, as the client sent them (zero values mean "not given", as in the
/// original's protobuf request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFilters {
    /// Exact customer id.
    pub customer_id: String,
    /// RFC 3339; orders created strictly after.
    pub after: String,
    /// RFC 3339; orders created strictly before.
    pub before: String,
    /// Orders with an item from any of these stores.
    pub store_ids: Vec<String>,
    /// Orders with any of these products.
    pub product_ids: Vec<String>,
    /// Orders whose total is at least this.
    pub min_total: f64,
    /// Orders whose total is at most this.
    pub max_total: f64,
    /// Exact status (case-insensitive).
    pub status: String,
}

/// Checked filters: `None` / empty means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Exact customer id.
    pub customer_id: Option<String>,
    /// Created strictly after.
    pub after: Option<OffsetDateTime>,
    /// Created strictly before.
    pub before: Option<OffsetDateTime>,
    /// Overlap with the order's store ids.
    pub store_ids: Vec<String>,
    /// Overlap with the order's product ids.
    pub product_ids: Vec<String>,
    /// Total at least.
    pub min_total: Option<f64>,
    /// Total at most.
    pub max_total: Option<f64>,
    /// Exact status.
    pub status: Option<OrderStatus>,
}

impl Filters {
    /// Checks raw filters.
    pub fn parse(raw: &RawFilters) -> Result<Filters, QueryError> {
        let after = parse_time("after", &raw.after)?;
        let before = parse_time("before", &raw.before)?;
        if let (Some(a), Some(b)) = (after, before)
            && a >= b
        {
            return Err(QueryError::EmptyPeriod);
        }
        let min_total = parse_total("minTotal", raw.min_total)?;
        let max_total = parse_total("maxTotal", raw.max_total)?;
        if let (Some(min), Some(max)) = (min_total, max_total)
            && min > max
        {
            return Err(QueryError::EmptyTotalRange);
        }
        let status = match raw.status.trim() {
            "" => None,
            text => Some(
                OrderStatus::parse(text)
                    .ok_or_else(|| QueryError::BadStatus(raw.status.clone()))?,
            ),
        };
        Ok(Filters {
            customer_id: non_empty(&raw.customer_id),
            after,
            before,
            store_ids: ids(&raw.store_ids),
            product_ids: ids(&raw.product_ids),
            min_total,
            max_total,
            status,
        })
    }
}

fn non_empty(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn ids(values: &[String]) -> Vec<String> {
    values.iter().filter_map(|v| non_empty(v)).collect()
}

fn parse_time(field: &'static str, value: &str) -> Result<Option<OffsetDateTime>, QueryError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(v, &Rfc3339)
        .map(Some)
        .map_err(|_| QueryError::BadTime {
            field,
            value: value.to_owned(),
        })
}

/// 0 is protobuf's "not given"; anything else bounds the total.
fn parse_total(field: &'static str, value: f64) -> Result<Option<f64>, QueryError> {
    if !value.is_finite() {
        return Err(QueryError::BadTotal(field));
    }
    Ok((value != 0.0).then_some(value))
}

/// The page size for a requested `limit`: 0 → [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`].
pub fn page_limit(limit: i64) -> Result<i64, QueryError> {
    match limit {
        l if l < 0 => Err(QueryError::NegativeLimit),
        0 => Ok(DEFAULT_LIMIT),
        l => Ok(l.min(MAX_LIMIT)),
    }
}

/// Where the next page starts: after the row with this (creation time, order id), going back
/// in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the last row returned (microseconds are what PostgreSQL keeps).
    pub created_at: OffsetDateTime,
    /// Its order id.
    pub order_id: String,
}

/// Version tag inside the cursor, so its format can change without misreading old ones.
const CURSOR_VERSION: &str = "v1";

impl Cursor {
    /// The opaque text handed to clients: base64url of `v1:<unix microseconds>:<order id>`.
    pub fn encode(&self) -> String {
        let micros = self.created_at.unix_timestamp_nanos() / 1_000;
        base64url::encode(format!("{CURSOR_VERSION}:{micros}:{}", self.order_id).as_bytes())
    }

    /// Reads a `next` value: `""` means the first page.
    pub fn decode(text: &str) -> Result<Option<Cursor>, QueryError> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let bad = || QueryError::BadCursor(text.to_owned());
        let bytes = base64url::decode(t).ok_or_else(bad)?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = plain.splitn(3, ':');
        let (Some(CURSOR_VERSION), Some(micros), Some(order_id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        let created_at =
            OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
        if order_id.is_empty() {
            return Err(bad());
        }
        Ok(Some(Cursor {
            created_at,
            order_id: order_id.to_owned(),
        }))
    }
}

/// URL-safe base64 without padding (RFC 4648 §5): cursors travel in JSON and may end up in
/// URLs. Small enough to keep here rather than add a dependency.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            // 1 byte → 2 characters, 2 → 3, 3 → 4.
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    pub fn decode(input: &str) -> Option<Vec<u8>> {
        let bytes = input.as_bytes();
        if bytes.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut n: u32 = 0;
            for (i, c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = chunk.len() - 1;
            // Bits beyond the last whole byte must be zero, or two texts would decode alike.
            if keep < 3 && decoded[keep..].iter().any(|b| *b != 0) {
                return None;
            }
            out.extend_from_slice(&decoded[..keep]);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_every_length_and_rejects_junk() {
            for len in 0..40u8 {
                let data: Vec<u8> = (0..len)
                    .map(|i| i.wrapping_mul(91).wrapping_add(7))
                    .collect();
                let text = encode(&data);
                assert!(!text.contains('='), "{text}");
                assert_eq!(decode(&text).unwrap(), data);
            }
            assert_eq!(encode(b"hello"), "aGVsbG8");
            assert_eq!(decode("a"), None);
            assert_eq!(decode("a+b/"), None, "standard alphabet is not ours");
            assert_eq!(decode("aGVsbG9"), None, "non-zero trailing bits");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn empty_filters_match_everything() {
        assert_eq!(
            Filters::parse(&RawFilters::default()),
            Ok(Filters::default())
        );
        let blanks = RawFilters {
            customer_id: "  ".into(),
            store_ids: vec!["".into(), " ".into()],
            ..RawFilters::default()
        };
        assert_eq!(Filters::parse(&blanks), Ok(Filters::default()));
    }

    #[test]
    fn every_filter_is_parsed() {
        let raw = RawFilters {
            customer_id: " c1 ".into(),
            after: "2024-05-01T00:00:00Z".into(),
            before: "2024-05-02T00:00:00+02:00".into(),
            store_ids: vec!["s1".into(), "".into()],
            product_ids: vec!["p1".into(), "p2".into()],
            min_total: 10.0,
            max_total: 20.5,
            status: "ready for pickup".into(),
        };
        let f = Filters::parse(&raw).unwrap();
        assert_eq!(f.customer_id.as_deref(), Some("c1"));
        assert_eq!(f.after, Some(at("2024-05-01T00:00:00Z")));
        assert_eq!(f.before, Some(at("2024-05-01T22:00:00Z")));
        assert_eq!(f.store_ids, vec!["s1"]);
        assert_eq!(f.product_ids, vec!["p1", "p2"]);
        assert_eq!((f.min_total, f.max_total), (Some(10.0), Some(20.5)));
        assert_eq!(f.status, Some(OrderStatus::ReadyForPickup));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let bad = |raw: RawFilters| Filters::parse(&raw).unwrap_err().to_string();
        let text = bad(RawFilters {
            after: "yesterday".into(),
            ..Default::default()
        });
        assert!(
            text.contains("filters.after") && text.contains("RFC 3339"),
            "{text}"
        );
        assert!(
            bad(RawFilters {
                before: "2024-13-01T00:00:00Z".into(),
                ..Default::default()
            })
            .contains("filters.before")
        );
        assert_eq!(
            bad(RawFilters {
                after: "2024-05-02T00:00:00Z".into(),
                before: "2024-05-01T00:00:00Z".into(),
                ..Default::default()
            }),
            "filters.after must be earlier than filters.before"
        );
        assert_eq!(
            bad(RawFilters {
                min_total: 5.0,
                max_total: 4.0,
                ..Default::default()
            }),
            "filters.minTotal cannot be greater than filters.maxTotal"
        );
        assert!(
            bad(RawFilters {
                max_total: f64::NAN,
                ..Default::default()
            })
            .contains("maxTotal")
        );
        assert!(
            bad(RawFilters {
                status: "Cancelled".into(),
                ..Default::default()
            })
            .contains("Ready For Pickup")
        );
    }

    #[test]
    fn limits_default_cap_and_refuse_negatives() {
        assert_eq!(page_limit(0), Ok(DEFAULT_LIMIT));
        assert_eq!(page_limit(7), Ok(7));
        assert_eq!(page_limit(10_000), Ok(MAX_LIMIT));
        assert_eq!(page_limit(-1), Err(QueryError::NegativeLimit));
        assert_eq!(
            QueryError::NegativeLimit.to_string(),
            "the limit cannot be negative"
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = Cursor {
            created_at: at("2024-05-01T12:34:56.123456Z"),
            order_id: "ord:with:colons".into(),
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text), Ok(Some(cursor)));
        assert_eq!(Cursor::decode(""), Ok(None));
        for junk in [
            "!!!",
            "bm9wZQ",
            &base64url::encode(b"v2:1:o"),
            &base64url::encode(b"v1:x:o"),
            &base64url::encode(b"v1:1:"),
        ] {
            assert!(
                matches!(Cursor::decode(junk), Err(QueryError::BadCursor(_))),
                "{junk}"
            );
        }
    }
}
