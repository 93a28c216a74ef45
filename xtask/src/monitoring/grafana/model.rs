//! The part of Grafana's dashboard JSON model the dashboards use (schema version 39), and a
//! builder that lays panels out left to right on the 24-column grid.

use serde::Serialize;

/// A dashboard, as Grafana imports it or a provisioning folder holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Stable id, so re-imports replace rather than duplicate.
    pub uid: String,
    /// The title.
    pub title: String,
    /// What it is for, and that it is generated.
    pub description: String,
    /// Tags for search.
    pub tags: Vec<String>,
    /// Times shown in UTC, as the plan and the audit log write them.
    pub timezone: String,
    /// The JSON model version.
    pub schema_version: u32,
    /// Generated: edits belong in the generator.
    pub editable: bool,
    /// Auto-refresh interval.
    pub refresh: String,
    /// The default time range.
    pub time: TimeRange,
    /// The dashboard's variables.
    pub templating: Templating,
    /// The panels.
    pub panels: Vec<Panel>,
}

/// `time: {from, to}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeRange {
    /// Start (`now-6h`).
    pub from: String,
    /// End (`now`).
    pub to: String,
}

/// `templating: {list}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Templating {
    /// The variables.
    pub list: Vec<Variable>,
}

/// A dashboard variable; only the Prometheus data source is one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variable {
    /// Referred to as `${name}`.
    pub name: String,
    /// Shown in the variable bar.
    pub label: String,
    /// `datasource`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The data source type offered (`prometheus`).
    pub query: String,
}

/// A panel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    /// Unique within the dashboard.
    pub id: u32,
    /// `timeseries`, `stat` or `heatmap`.
    #[serde(rename = "type")]
    pub kind: PanelKind,
    /// The title.
    pub title: String,
    /// What it shows and how to read it.
    pub description: String,
    /// Where it sits.
    pub grid_pos: GridPos,
    /// The data source (the dashboard's variable).
    pub datasource: DataSourceRef,
    /// The queries.
    pub targets: Vec<Target>,
    /// Units and limits.
    pub field_config: FieldConfig,
}

/// The panel types used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// Lines over time.
    Timeseries,
    /// One big number.
    Stat,
    /// A histogram over time.
    Heatmap,
}

/// Position on the 24-column grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GridPos {
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Width in columns.
    pub w: u32,
    /// Height in rows.
    pub h: u32,
}

/// A reference to a data source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataSourceRef {
    /// `prometheus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `${datasource}`.
    pub uid: String,
}

/// One PromQL query of a panel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `A`, `B`, ...
    pub ref_id: String,
    /// The PromQL.
    pub expr: String,
    /// The series' name in the legend.
    pub legend_format: String,
    /// `heatmap` for histogram buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The data source (the dashboard's variable).
    pub datasource: DataSourceRef,
}

/// `fieldConfig`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldConfig {
    /// Applies to every series.
    pub defaults: FieldDefaults,
    /// None.
    pub overrides: Vec<serde_json::Value>,
}

/// `fieldConfig.defaults`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDefaults {
    /// Grafana's unit id (`percentunit`, `s`, `bytes`, `reqps`, `short`).
    pub unit: String,
    /// Lower bound of the axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound of the axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A query and its legend.
pub struct Query {
    /// The PromQL.
    pub expr: String,
    /// The legend (`{{service}}`).
    pub legend: String,
}

/// Builds a query.
pub fn query(expr: impl Into<String>, legend: impl Into<String>) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.into(),
    }
}

/// Lays panels out in reading order.
pub struct DashboardBuilder {
    dashboard: Dashboard,
    x: u32,
    y: u32,
    row_height: u32,
}

/// The name of the data source variable.
const DATASOURCE: &str = "datasource";

fn datasource() -> DataSourceRef {
    DataSourceRef {
        kind: "prometheus".to_string(),
        uid: format!("${{{DATASOURCE}}}"),
    }
}

impl DashboardBuilder {
    /// An empty dashboard.
    pub fn new(uid: &str, title: &str, description: &str) -> Self {
        Self {
            dashboard: Dashboard {
                uid: uid.to_string(),
                title: title.to_string(),
                description: format!(
                    "{description} Generated by `cargo xtask monitoring` from rollout/plan.yaml; \
                     edit the generator, not this file."
                ),
                tags: vec!["akidb".to_string(), "akidb-candle".to_string()],
                timezone: "utc".to_string(),
                schema_version: 39,
                editable: false,
                refresh: "30s".to_string(),
                time: TimeRange {
                    from: "now-6h".to_string(),
                    to: "now".to_string(),
                },
                templating: Templating {
                    list: vec![Variable {
                        name: DATASOURCE.to_string(),
                        label: "Prometheus".to_string(),
                        kind: "datasource".to_string(),
                        query: "prometheus".to_string(),
                    }],
                },
                panels: Vec::new(),
            },
            x: 0,
            y: 0,
            row_height: 0,
        }
    }

    /// Adds a panel `width` columns wide (a stat is 4 rows high, others 8).
    pub fn panel(
        mut self,
        kind: PanelKind,
        width: u32,
        (title, description): (&str, &str),
        unit: &str,
        queries: Vec<Query>,
    ) -> Self {
        let height = if kind == PanelKind::Stat { 4 } else { 8 };
        if self.x + width > 24 {
            self.x = 0;
            self.y += self.row_height;
            self.row_height = 0;
        }
        let grid_pos = GridPos {
            x: self.x,
            y: self.y,
            w: width,
            h: height,
        };
        self.x += width;
        self.row_height = self.row_height.max(height);
        let id = self.dashboard.panels.len() as u32 + 1;
        let targets = queries
            .into_iter()
            .zip('A'..='Z')
            .map(|(query, ref_id)| Target {
                ref_id: ref_id.to_string(),
                expr: query.expr,
                legend_format: query.legend,
                format: (kind == PanelKind::Heatmap).then(|| "heatmap".to_string()),
                datasource: datasource(),
            })
            .collect();
        let (min, max) = match unit {
            "percentunit" => (Some(0.0), None),
            _ => (None, None),
        };
        self.dashboard.panels.push(Panel {
            id,
            kind,
            title: title.to_string(),
            description: description.to_string(),
            grid_pos,
            datasource: datasource(),
            targets,
            field_config: FieldConfig {
                defaults: FieldDefaults {
                    unit: unit.to_string(),
                    min,
                    max,
                },
                overrides: Vec::new(),
            },
        });
        self
    }

    /// The dashboard.
    pub fn build(self) -> Dashboard {
        self.dashboard
    }
}
