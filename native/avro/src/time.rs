//! Civil date <-> days since 1970-01-01 (proleptic Gregorian), for `timestamp-micros`.
//!
//! Howard Hinnant's `days_from_civil` / `civil_from_days`: exact integer arithmetic, so a
//! timestamp encodes to the same microsecond count as `(t - EPOCH) // timedelta(microseconds=1)`.

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days from 1970-01-01 to the given date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) that many days from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as u8, d as u8)
}

/// Microseconds since the epoch of a UTC civil time.
pub fn micros_from_civil(date: (i64, i64, i64), time: (i64, i64, i64, i64)) -> i64 {
    let (hour, minute, second, micro) = time;
    let seconds = (hour * 60 + minute) * 60 + second;
    days_from_civil(date.0, date.1, date.2) * MICROS_PER_DAY + seconds * 1_000_000 + micro
}

/// A UTC civil time split out of microseconds since the epoch.
pub struct Civil {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micro: u32,
}

pub fn civil_from_micros(micros: i64) -> Civil {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = rest / 1_000_000;
    Civil {
        year,
        month,
        day,
        hour: (seconds / 3600) as u8,
        minute: (seconds / 60 % 60) as u8,
        second: (seconds % 60) as u8,
        micro: (rest % 1_000_000) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_of_the_datetime_range() {
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn splits_micros_before_the_epoch() {
        let c = civil_from_micros(-1);
        assert_eq!((c.year, c.month, c.day), (1969, 12, 31));
        assert_eq!((c.hour, c.minute, c.second, c.micro), (23, 59, 59, 999_999));
    }
}
