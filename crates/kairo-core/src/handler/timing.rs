//! SORACOM's timing constants (`inactiveTimeoutDateConst`,
//! `executionDateTimeConst`) plus an offset in minutes, all in UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// When a rule is evaluated again, or an action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateConst {
    /// At once (plus the offset).
    Immediately,
    /// The next 00:00 UTC.
    BeginningOfNextDay,
    /// The 1st of next month, 00:00 UTC.
    BeginningOfNextMonth,
    /// 24 hours later.
    AfterOneDay,
    /// Never.
    Never,
}

/// The largest offset SORACOM accepts, in minutes (365 days).
pub const MAX_OFFSET_MINUTES: i64 = 525_600;

impl DateConst {
    /// Parses SORACOM's constant names.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "IMMEDIATELY" => Self::Immediately,
            "BEGINNING_OF_NEXT_DAY" => Self::BeginningOfNextDay,
            "BEGINNING_OF_NEXT_MONTH" => Self::BeginningOfNextMonth,
            "AFTER_ONE_DAY" => Self::AfterOneDay,
            "NEVER" => Self::Never,
            _ => return None,
        })
    }

    /// The time this constant names relative to `from_ms`, plus `offset_minutes`; `None` for NEVER.
    pub fn after(self, from_ms: i64, offset_minutes: i64) -> Option<i64> {
        let offset = offset_minutes * 60_000;
        let from = Utc.timestamp_millis_opt(from_ms).single()?;
        let base = match self {
            Self::Never => return None,
            Self::Immediately => from_ms,
            Self::AfterOneDay => from_ms + 24 * 3_600_000,
            Self::BeginningOfNextDay => start_of_day(from.date_naive() + Duration::days(1)),
            Self::BeginningOfNextMonth => {
                let (year, month) = if from.month() == 12 {
                    (from.year() + 1, 1)
                } else {
                    (from.year(), from.month() + 1)
                };
                start_of_day(NaiveDate::from_ymd_opt(year, month, 1)?)
            }
        };
        Some(base + offset)
    }
}

fn start_of_day(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

/// `YYYYMMDD` and `YYYYMM` of `ms` in UTC: the keys of daily and monthly windows.
pub fn utc_day_and_month(ms: i64) -> (String, String) {
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    (t.format("%Y%m%d").to_string(), t.format("%Y%m").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn constants_are_utc() {
        // 2025-02-01 05:00 JST is still January in UTC.
        let t = at("2025-02-01T05:00:00+09:00");
        assert_eq!(
            DateConst::BeginningOfNextMonth.after(t, 0),
            Some(at("2025-02-01T00:00:00Z"))
        );
        assert_eq!(
            DateConst::BeginningOfNextDay.after(t, 0),
            Some(at("2025-02-01T00:00:00Z"))
        );
        assert_eq!(DateConst::AfterOneDay.after(t, 0), Some(t + 86_400_000));
        assert_eq!(DateConst::Immediately.after(t, 0), Some(t));
        assert_eq!(DateConst::Never.after(t, 0), None);
    }

    #[test]
    fn month_ends_and_year_rollover() {
        assert_eq!(
            DateConst::BeginningOfNextMonth.after(at("2025-02-28T23:59:59Z"), 0),
            Some(at("2025-03-01T00:00:00Z"))
        );
        assert_eq!(
            DateConst::BeginningOfNextMonth.after(at("2024-12-31T12:00:00Z"), 0),
            Some(at("2025-01-01T00:00:00Z"))
        );
        assert_eq!(
            DateConst::BeginningOfNextDay.after(at("2024-12-31T23:00:00Z"), 0),
            Some(at("2025-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn offsets_add_minutes() {
        // BEGINNING_OF_NEXT_MONTH + 1440 from 2025-03-15 is 2025-04-02 00:00 UTC.
        assert_eq!(
            DateConst::BeginningOfNextMonth.after(at("2025-03-15T10:00:00Z"), 1440),
            Some(at("2025-04-02T00:00:00Z"))
        );
        assert_eq!(
            DateConst::BeginningOfNextDay.after(at("2025-03-10T12:00:00Z"), 5),
            Some(at("2025-03-11T00:05:00Z"))
        );
    }

    #[test]
    fn windows_are_utc_days_and_months() {
        assert_eq!(
            utc_day_and_month(at("2025-02-01T05:00:00+09:00")),
            ("20250131".into(), "202501".into())
        );
    }
}
