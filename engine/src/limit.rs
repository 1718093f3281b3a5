//! Time limits: how many working days, natural days or hours a task, step, promise or stage has.
//!
//! The arithmetic lives in `calendar`; this module only owns the *notation* policy staff write.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::RawLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 工作日 on the workflow's calendar.
    WorkingDays,
    /// 自然日.
    Days,
    Hours,
}

/// A parsed, positive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limit {
    pub amount: u32,
    pub unit: Unit,
}

impl Limit {
    pub const fn working_days(amount: u32) -> Self {
        Limit {
            amount,
            unit: Unit::WorkingDays,
        }
    }

    /// Reads the notation of [`RawLimit`]. `allow_zero` is for offsets such as an escalation rung
    /// `after: 0wd`; limits proper must be positive.
    pub fn parse(raw: &RawLimit, allow_zero: bool) -> Result<Limit, String> {
        let (amount, unit) = match raw {
            RawLimit::Days(n) => (*n, Unit::WorkingDays),
            RawLimit::Text(t) => {
                let t = t.trim();
                let split = t
                    .char_indices()
                    .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
                    .map(|(i, _)| i)
                    .unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: i64 = num.parse().map_err(|_| {
                    format!(
                        "`{t}` is not a limit: write a number and a unit, e.g. `10wd`, `5d`, `8h`"
                    )
                })?;
                let unit = match unit.trim().to_lowercase().as_str() {
                    "" | "wd" | "working day" | "working days" | "工作日" | "个工作日" => {
                        Unit::WorkingDays
                    }
                    "d" | "day" | "days" | "natural days" | "自然日" | "天" => Unit::Days,
                    "h" | "hour" | "hours" | "小时" => Unit::Hours,
                    other => {
                        return Err(format!(
                            "unknown unit `{other}` in limit `{t}`: use wd (working days), d (natural days) or h (hours)"
                        ));
                    }
                };
                (n, unit)
            }
        };
        if amount < 0 || (amount == 0 && !allow_zero) {
            return Err(format!("a limit must be positive, got {amount}"));
        }
        let amount = u32::try_from(amount).map_err(|_| format!("limit {amount} is too large"))?;
        Ok(Limit { amount, unit })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.unit {
            Unit::WorkingDays => "wd",
            Unit::Days => "d",
            Unit::Hours => "h",
        };
        write!(f, "{}{}", self.amount, u)
    }
}

/// A share written as `75%`, `2/3` or `0.75`, as a fraction in (0, 1].
pub fn parse_share(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim().parse::<f64>().map(|x| x / 100.0).ok()
    } else if let Some((a, b)) = t.split_once('/') {
        match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) if b != 0.0 => Some(a / b),
            _ => None,
        }
    } else {
        t.parse::<f64>().ok()
    };
    match v {
        Some(x) if x > 0.0 && x <= 1.0 && x.is_finite() => Ok(x),
        Some(_) => Err(format!("share `{t}` must be above 0 and at most 100%")),
        None => Err(format!("`{t}` is not a share: write e.g. `75%` or `2/3`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Limit, String> {
        Limit::parse(&RawLimit::Text(s.into()), false)
    }

    #[test]
    fn notations() {
        assert_eq!(p("10wd"), Ok(Limit::working_days(10)));
        assert_eq!(p("10 working days"), Ok(Limit::working_days(10)));
        assert_eq!(p("20工作日"), Ok(Limit::working_days(20)));
        assert_eq!(p("5d").map(|l| l.unit), Ok(Unit::Days));
        assert_eq!(p("8小时").map(|l| l.unit), Ok(Unit::Hours));
        assert_eq!(
            Limit::parse(&RawLimit::Days(3), false),
            Ok(Limit::working_days(3))
        );
        assert!(p("0wd").is_err());
        assert!(p("-2wd").is_err());
        assert!(p("ten days").is_err());
        assert!(p("3 weeks").is_err());
        assert_eq!(
            Limit::parse(&RawLimit::Text("0wd".into()), true),
            Ok(Limit::working_days(0))
        );
    }

    #[test]
    fn shares() {
        assert!((parse_share("2/3").unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(parse_share("75%"), Ok(0.75));
        assert!(parse_share("0%").is_err());
        assert!(parse_share("150%").is_err());
        assert!(parse_share("1/0").is_err());
    }
}
