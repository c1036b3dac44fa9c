//! Simple types: the built-in value spaces and the facets of restrictions, and the check of
//! one value's lexical form against them.

use regex::Regex;

/// The value space a simple type restricts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Builtin {
    String,
    /// An integer type with its bounds.
    Integer {
        min: Option<i128>,
        max: Option<i128>,
    },
    Decimal,
    Float,
    Boolean,
    Date,
    DateTime,
    Time,
    Base64,
    Hex,
    /// `anyType`, `anySimpleType`, lists and unions: any text.
    Any,
}

impl Builtin {
    pub(crate) fn of(local: &str) -> Option<Builtin> {
        let int = |min: Option<i128>, max: Option<i128>| Some(Builtin::Integer { min, max });
        match local {
            "string" | "normalizedString" | "token" | "anyURI" | "QName" | "NCName" | "Name" | "ID" | "IDREF"
            | "language" | "NMTOKEN" | "ENTITY" | "gYear" | "gYearMonth" | "gMonth" | "gMonthDay" | "gDay"
            | "duration" => Some(Builtin::String),
            "integer" => int(None, None),
            "long" => int(Some(i64::MIN.into()), Some(i64::MAX.into())),
            "int" => int(Some(i32::MIN.into()), Some(i32::MAX.into())),
            "short" => int(Some(i16::MIN.into()), Some(i16::MAX.into())),
            "byte" => int(Some(i8::MIN.into()), Some(i8::MAX.into())),
            "nonNegativeInteger" => int(Some(0), None),
            "positiveInteger" => int(Some(1), None),
            "nonPositiveInteger" => int(None, Some(0)),
            "negativeInteger" => int(None, Some(-1)),
            "unsignedLong" => int(Some(0), Some(u64::MAX.into())),
            "unsignedInt" => int(Some(0), Some(u32::MAX.into())),
            "unsignedShort" => int(Some(0), Some(u16::MAX.into())),
            "unsignedByte" => int(Some(0), Some(u8::MAX.into())),
            "decimal" => Some(Builtin::Decimal),
            "float" | "double" => Some(Builtin::Float),
            "boolean" => Some(Builtin::Boolean),
            "date" => Some(Builtin::Date),
            "dateTime" => Some(Builtin::DateTime),
            "time" => Some(Builtin::Time),
            "base64Binary" => Some(Builtin::Base64),
            "hexBinary" => Some(Builtin::Hex),
            "anyType" | "anySimpleType" => Some(Builtin::Any),
            _ => None,
        }
    }
}

/// A simple type: a built-in base and the facets of its restrictions.
#[derive(Debug, Clone)]
pub struct Simple {
    pub base: Builtin,
    pub enums: Vec<String>,
    pub min_len: Option<usize>,
    pub max_len: Option<usize>,
    /// Anchored patterns; a value must match all of them (one per restriction step).
    pub patterns: Vec<Regex>,
    /// Bounds of a decimal or float value (the bound, whether it is inclusive).
    pub min_value: Option<(f64, bool)>,
    pub max_value: Option<(f64, bool)>,
}

impl Simple {
    pub(crate) fn builtin(base: Builtin) -> Self {
        Self {
            base,
            enums: Vec::new(),
            min_len: None,
            max_len: None,
            patterns: Vec::new(),
            min_value: None,
            max_value: None,
        }
    }

    /// Checks a value's lexical form (whitespace around it ignored, as the schema's
    /// `collapse` does for every type but strings).
    pub fn check(&self, raw: &str) -> Result<(), String> {
        let v = if matches!(self.base, Builtin::String | Builtin::Any) { raw } else { raw.trim() };
        let bad = |what: &str| Err(format!("`{}` is not {what}", short(v)));
        match self.base {
            Builtin::String | Builtin::Any => {}
            Builtin::Integer { min, max } => {
                let Ok(n) = v.strip_prefix('+').unwrap_or(v).parse::<i128>() else { return bad("an integer") };
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return bad("within the type's range");
                }
            }
            Builtin::Decimal => {
                let body = v.strip_prefix(['+', '-']).unwrap_or(v);
                let (i, f) = body.split_once('.').unwrap_or((body, ""));
                let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                if (i.is_empty() && f.is_empty()) || !digits(i) || !digits(f) {
                    return bad("a decimal number");
                }
            }
            Builtin::Float => {
                if !matches!(v, "INF" | "-INF" | "NaN") && v.parse::<f64>().is_err() {
                    return bad("a number");
                }
            }
            Builtin::Boolean => {
                if !matches!(v, "true" | "false" | "1" | "0") {
                    return bad("a boolean");
                }
            }
            Builtin::Date => {
                if !lexical().is_some_and(|l| l.date.is_match(v)) {
                    return bad("a date (YYYY-MM-DD)");
                }
            }
            Builtin::DateTime => {
                if !lexical().is_some_and(|l| l.date_time.is_match(v)) {
                    return bad("a date and time (YYYY-MM-DDThh:mm:ss)");
                }
            }
            Builtin::Time => {
                if !lexical().is_some_and(|l| l.time.is_match(v)) {
                    return bad("a time (hh:mm:ss)");
                }
            }
            Builtin::Base64 => {
                use base64::Engine;
                let compact: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                if base64::engine::general_purpose::STANDARD.decode(compact).is_err() {
                    return bad("base64");
                }
            }
            Builtin::Hex => {
                if v.len() % 2 != 0 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad("hexadecimal");
                }
            }
        }
        if self.min_value.is_some() || self.max_value.is_some() {
            let n: f64 = v.parse().unwrap_or(f64::NAN);
            let below = self.min_value.is_some_and(|(b, inc)| if inc { n < b } else { n <= b });
            let above = self.max_value.is_some_and(|(b, inc)| if inc { n > b } else { n >= b });
            if n.is_nan() || below || above {
                return bad("within the type's bounds");
            }
        }
        if !self.enums.is_empty() && !self.enums.iter().any(|e| e == v) {
            return Err(format!("`{}` is not one of {}", short(v), self.enums.join(", ")));
        }
        let len = match self.base {
            Builtin::Base64 => {
                let n = v.chars().filter(|c| !c.is_ascii_whitespace()).count();
                n / 4 * 3 - v.matches('=').count()
            }
            Builtin::Hex => v.len() / 2,
            _ => v.chars().count(),
        };
        if self.min_len.is_some_and(|m| len < m) {
            return Err(format!("`{}` is shorter than {} characters", short(v), self.min_len.unwrap_or(0)));
        }
        if self.max_len.is_some_and(|m| len > m) {
            return Err(format!("`{}` is longer than {} characters", short(v), self.max_len.unwrap_or(0)));
        }
        if let Some(p) = self.patterns.iter().find(|p| !p.is_match(v)) {
            let shown = p.as_str().trim_start_matches("^(?:").trim_end_matches(")$");
            return Err(format!("`{}` does not match the pattern {shown}", short(v)));
        }
        Ok(())
    }
}

/// At most 64 characters of a value, for messages.
fn short(v: &str) -> String {
    if v.chars().count() <= 64 {
        v.to_owned()
    } else {
        format!("{}…", v.chars().take(64).collect::<String>())
    }
}

struct Lexical {
    date: Regex,
    date_time: Regex,
    time: Regex,
}

/// The lexical forms of dates and times (`None` only if these fixed patterns failed to
/// compile, which a unit test rules out).
fn lexical() -> Option<&'static Lexical> {
    static L: std::sync::OnceLock<Option<Lexical>> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let tz = r"(Z|[+-]\d{2}:\d{2})?";
        let date = r"-?\d{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])";
        let time = r"([01]\d|2[0-4]):[0-5]\d:[0-5]\d(\.\d+)?";
        Some(Lexical {
            date: Regex::new(&format!("^{date}{tz}$")).ok()?,
            date_time: Regex::new(&format!("^{date}T{time}{tz}$")).ok()?,
            time: Regex::new(&format!("^{time}{tz}$")).ok()?,
        })
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexical_patterns_compile() {
        assert!(lexical().is_some());
    }
}
