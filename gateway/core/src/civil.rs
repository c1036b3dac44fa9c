//! Calendar arithmetic on days since 1970-01-01 (UTC), for timestamps and quota windows.

/// (year, month, day) to days since 1970-01-01 — Howard Hinnant's days_from_civil.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's civil_from_days.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Today in Italy (CET/CEST, the EU rule: summer time from the last Sunday of March to the
/// last Sunday of October, 01:00 UTC), as `YYYY-MM-DD`.
pub fn today_in_italy() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    italy_date(secs)
}

/// The date in Italy at `secs` since the epoch, as `YYYY-MM-DD`.
pub fn italy_date(secs: i64) -> String {
    let (y, _, _) = civil_from_days(secs.div_euclid(86_400));
    let last_sunday = |m: u32| {
        let last = days_from_civil(y, m, 31);
        last - (last + 4).rem_euclid(7) // 1970-01-01 was a Thursday
    };
    let summer = (last_sunday(3) * 86_400 + 3600..last_sunday(10) * 86_400 + 3600).contains(&secs);
    let (y, m, d) = civil_from_days((secs + if summer { 7200 } else { 3600 }).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        // CET in winter, CEST from the last Sunday of March (2026-03-29, 01:00 UTC).
        assert_eq!(italy_date(days_from_civil(2026, 12, 3) * 86_400 + 23 * 3600 + 30 * 60), "2026-12-04");
        assert_eq!(italy_date(days_from_civil(2026, 3, 29) * 86_400 + 22 * 3600 + 30 * 60), "2026-03-30");
        assert_eq!(italy_date(days_from_civil(2026, 3, 28) * 86_400 + 22 * 3600 + 30 * 60), "2026-03-28");
        for d in -800_000..800_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
