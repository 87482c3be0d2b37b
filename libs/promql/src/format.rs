//! `format_query`: a query printed the way Prometheus's `/api/v1/format_query`
//! prints it, within the shape limits and a byte budget.

use crate::engine::on_query_thread;
use crate::error::QueryError;
use crate::guard::{parse_query, QueryShapeLimits};

/// Parses `text` within `shape` and prints it prettified, on a query thread
/// (printing recurses once per level of the tree). An answer longer than
/// `max_bytes` is refused: the text and depth limits already bound it (each
/// node is printed on a line indented by its depth), this bounds what is
/// sent.
pub async fn format_query(
    text: &str,
    shape: &QueryShapeLimits,
    max_bytes: usize,
) -> Result<String, QueryError> {
    let text = text.to_owned();
    let shape = *shape;
    on_query_thread(move || {
        let expr = parse_query(&text, &shape)?;
        let pretty = expr.prettify();
        if pretty.len() > max_bytes {
            return Err(QueryError::ResponseTooLarge(max_bytes));
        }
        Ok(pretty)
    })
    .await
}
