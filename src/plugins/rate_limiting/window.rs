//! Fixed calendar windows (UTC) of the rate-limiting periods: second, minute, hour, day, month,
//! year, each starting on its calendar boundary (Kong's `timestamp.get_timestamps`).

/// One rate-limiting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// Calendar second.
    Second,
    /// Calendar minute.
    Minute,
    /// Calendar hour.
    Hour,
    /// Calendar day (UTC).
    Day,
    /// Calendar month (UTC).
    Month,
    /// Calendar year (UTC).
    Year,
}

const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

impl Period {
    /// Every period, shortest first (Kong's `ORDERED_PERIODS`).
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// The config field and counter-key name (`minute`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// Position in [`Period::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Kong's nominal window length in seconds (its `EXPIRATION` table: a month is 30 days, a
    /// year 365), used to break ties between equally constrained periods.
    pub fn nominal_secs(self) -> i64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
            Self::Month => 2_592_000,
            Self::Year => 31_536_000,
        }
    }

    /// `[start, end)` in Unix milliseconds of the window holding `now_ms`.
    pub fn window(self, now_ms: i64) -> (i64, i64) {
        let fixed = |len: i64| {
            let start = now_ms.div_euclid(len) * len;
            (start, start + len)
        };
        match self {
            Self::Second => fixed(SECOND_MS),
            Self::Minute => fixed(MINUTE_MS),
            Self::Hour => fixed(HOUR_MS),
            Self::Day => fixed(DAY_MS),
            Self::Month => {
                let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * DAY_MS,
                    days_from_civil(ny, nm, 1) * DAY_MS,
                )
            }
            Self::Year => {
                let (y, _, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                (
                    days_from_civil(y, 1, 1) * DAY_MS,
                    days_from_civil(y + 1, 1, 1) * DAY_MS,
                )
            }
        }
    }

    /// Whole seconds until the window holding `now_ms` ends, at least 1 (`RateLimit-Reset`):
    /// the window's length minus the whole seconds elapsed in it, as Kong computes it, with the
    /// real calendar length of months and years.
    pub fn reset_secs(self, now_ms: i64) -> i64 {
        let (start, end) = self.window(now_ms);
        ((end - start) / SECOND_MS - (now_ms - start) / SECOND_MS).max(1)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-02-29T13:45:30.250Z
    const T: i64 = 1_709_214_330_250;

    #[test]
    fn calendar_boundaries() {
        assert_eq!(
            Period::Second.window(T),
            (1_709_214_330_000, 1_709_214_331_000)
        );
        assert_eq!(
            Period::Minute.window(T),
            (1_709_214_300_000, 1_709_214_360_000)
        );
        assert_eq!(
            Period::Hour.window(T),
            (1_709_211_600_000, 1_709_215_200_000)
        );
        // 2024-02-29T00:00Z .. 2024-03-01T00:00Z
        assert_eq!(
            Period::Day.window(T),
            (1_709_164_800_000, 1_709_251_200_000)
        );
        // 2024-02-01 .. 2024-03-01 (a leap February: 29 days)
        assert_eq!(
            Period::Month.window(T),
            (1_706_745_600_000, 1_709_251_200_000)
        );
        // 2024-01-01 .. 2025-01-01 (366 days)
        assert_eq!(
            Period::Year.window(T),
            (1_704_067_200_000, 1_735_689_600_000)
        );
        // December rolls over into the next year.
        let dec = 1_735_603_200_000; // 2024-12-31T00:00Z
        assert_eq!(
            Period::Month.window(dec),
            (1_733_011_200_000, 1_735_689_600_000)
        );
    }

    #[test]
    fn reset_is_whole_seconds_left_and_at_least_one() {
        assert_eq!(Period::Second.reset_secs(T), 1);
        assert_eq!(Period::Minute.reset_secs(T), 30);
        assert_eq!(Period::Minute.reset_secs(1_709_214_300_000), 60);
        assert_eq!(Period::Minute.reset_secs(1_709_214_359_999), 1);
        assert_eq!(Period::Hour.reset_secs(T), 3600 - (45 * 60 + 30));
        assert_eq!(
            Period::Day.reset_secs(T),
            86_400 - (13 * 3600 + 45 * 60 + 30)
        );
        let month_left = (1_709_251_200_000 - 1_709_214_331_000) / 1000 + 1;
        assert_eq!(Period::Month.reset_secs(T), month_left);
    }

    #[test]
    fn civil_round_trip() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
