//! Cells of a project's draft notebook, in notebook order. Code, SQL and Markdown cells are made
//! through the API; chart cells only through [`crate::FakeHex::add_chart_cell`] (the API cannot
//! make them). A cell has a version-scoped `id` and a `staticId` that is stable across versions;
//! the fake keeps one (draft) version, so both simply name the cell.
//!
//! Two things are derived from cells rather than stored:
//! - the **tables a project queries** (GetQueriedTables): the names after `FROM` and `JOIN` in
//!   its SQL cells that have a data connection;
//! - the **output** of a SQL cell (GetCellOutput): a one-row table echoing its query, or a run
//!   error when the cell has no data connection and is not dataframe SQL.

use uuid::Uuid;

/// A cell's type, as Hex spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellType {
    Code,
    Sql,
    Markdown,
    Chart,
}

impl CellType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CellType::Code => "CODE",
            CellType::Sql => "SQL",
            CellType::Markdown => "MARKDOWN",
            CellType::Chart => "CHART",
        }
    }

    /// The types CreateCell accepts.
    pub(crate) fn creatable(s: &str) -> Option<CellType> {
        [CellType::Code, CellType::Sql, CellType::Markdown].into_iter().find(|t| t.as_str() == s)
    }

    /// The key of this type's variant in a cell's `contents` (`codeCell`, …).
    pub(crate) fn contents_key(self) -> &'static str {
        match self {
            CellType::Code => "codeCell",
            CellType::Sql => "sqlCell",
            CellType::Markdown => "markdownCell",
            CellType::Chart => "chartCell",
        }
    }
}

/// One cell.
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    pub(crate) id: Uuid,
    pub(crate) static_id: Uuid,
    pub(crate) seq: u64,
    pub(crate) project_id: Uuid,
    pub(crate) cell_type: CellType,
    pub(crate) label: Option<String>,
    /// Code, SQL or Markdown source; empty for charts.
    pub(crate) source: String,
    /// SQL cells: the dataframe the result goes into.
    pub(crate) output_dataframe: Option<String>,
    /// SQL cells: the connection queried.
    pub(crate) data_connection_id: Option<Uuid>,
    /// SQL cells: queries other cells' dataframes instead of a connection.
    pub(crate) dataframe_sql: bool,
}

impl Cell {
    /// Whether `key` (a cell id or a static id) names this cell.
    pub(crate) fn is(&self, key: Uuid) -> bool {
        self.id == key || self.static_id == key
    }
}

/// The table names a SQL query reads: each name after `FROM` or `JOIN`, unquoted, without
/// subqueries, in order of appearance and without repeats.
pub(crate) fn tables_in(sql: &str) -> Vec<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let mut tables: Vec<String> = Vec::new();
    for pair in words.windows(2) {
        if !(pair[0].eq_ignore_ascii_case("from") || pair[0].eq_ignore_ascii_case("join")) {
            continue;
        }
        let name: String = pair[1]
            .trim_end_matches([';', ',', ')'])
            .chars()
            .filter(|c| !matches!(c, '"' | '`' | '[' | ']'))
            .collect();
        let is_name = !name.is_empty()
            && !name.starts_with('(')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-');
        if is_name && !tables.contains(&name) {
            tables.push(name);
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::tables_in;

    #[test]
    fn tables_are_read_from_from_and_join_clauses() {
        let sql = "select * from analytics.orders o\n join \"public\".\"users\" u on o.user_id = u.id\n\
                   where o.id in (select id from (select 1)) ; select 1 FROM analytics.orders;";
        assert_eq!(tables_in(sql), ["analytics.orders", "public.users"]);
        assert!(tables_in("select 1").is_empty());
    }
}
