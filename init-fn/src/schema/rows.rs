//! Row counts whose cost does not grow with the table: the catalog's estimate (`pg_class.reltuples`,
//! scaled to the table's current size the way the planner does) for large tables, an exact
//! `count(*)` only below [`EXACT_BELOW`] estimated rows or when asked for.

use tokio_postgres::Client;

/// Tables estimated below this many rows are counted exactly (a scan of at most a few MiB).
pub const EXACT_BELOW: f64 = 100_000.0;

/// Rows per 8 KiB page assumed for a table that was never analyzed (no `reltuples` yet): a
/// deliberately rough density, only used to decide that a table is too big to count.
const UNANALYZED_ROWS_PER_PAGE: f64 = 60.0;

/// A table's row count and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub rows: i64,
    pub exact: bool,
}

/// Counts `public.<table>` (which must exist): exactly when `exact` or when the estimate is small.
pub async fn count(
    client: &Client,
    table: &str,
    exact: bool,
) -> Result<Rows, tokio_postgres::Error> {
    if !exact {
        let estimate = estimate(client, table).await?;
        if estimate >= EXACT_BELOW {
            return Ok(Rows {
                rows: estimate.round() as i64,
                exact: false,
            });
        }
    }
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FROM public.\"{}\"",
                table.replace('"', "\"\"")
            ),
            &[],
        )
        .await?;
    Ok(Rows {
        rows: row.get(0),
        exact: true,
    })
}

/// The planner's estimate: `reltuples` per page at the last ANALYZE times the pages there are now.
async fn estimate(client: &Client, table: &str) -> Result<f64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT c.reltuples::float8, c.relpages::float8,
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8)::float8
               FROM pg_class c
              WHERE c.oid = to_regclass('public.' || quote_ident($1))",
            &[&table],
        )
        .await?;
    let (reltuples, relpages, pages): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
    Ok(scaled(reltuples, relpages, pages))
}

/// `reltuples` is -1 (PostgreSQL 14+) or 0 with `relpages` 0 before the first VACUUM/ANALYZE.
fn scaled(reltuples: f64, relpages: f64, pages: f64) -> f64 {
    if reltuples >= 0.0 && relpages > 0.0 {
        reltuples / relpages * pages
    } else {
        pages * UNANALYZED_ROWS_PER_PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_the_last_analyze_to_the_current_size() {
        assert_eq!(scaled(1000.0, 10.0, 20.0), 2000.0);
        assert_eq!(scaled(0.0, 5.0, 5.0), 0.0);
        // Never analyzed: only the size speaks.
        assert_eq!(scaled(-1.0, 0.0, 0.0), 0.0);
        assert_eq!(scaled(-1.0, 0.0, 100_000.0), 6_000_000.0);
        assert_eq!(scaled(0.0, 0.0, 2.0), 120.0);
    }
}
