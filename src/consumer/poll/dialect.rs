//! Dialects: how an upstream's header says which columns make a row's id,
//! which are text, and which are values.
//!
//! The rules, in order:
//!
//! 1. `UPSTREAM_KEY=col[,col…]` set: those columns, joined with `:`, are
//!    the id (`id` in answers). A key column the header lacks, or one named
//!    twice, refuses the body (`invalid_csv`, naming it).
//! 2. First column `switch_id`: the original matrix, exactly as before
//!    (`switch_id` in answers, every other column a value).
//! 3. A UFM Telemetry header: `Node_GUID` and `Port_Number` (its
//!    `xcset` spelling) or `node_guid` and `port_num` (`/csv/metrics`), in
//!    any case: key `Node_GUID:Port_Number`, one row per port.
//! 4. Anything else is refused, saying what would be read.
//!
//! Keyed rows (1 and 3) keep their key columns as text fields too, and
//! their labels: `UPSTREAM_LABELS` if set (the columns of it the header
//! has), else whichever of `timestamp`, `source_id`, `tag`, `node_guid`
//! (when it is not a key), `port_guid` and `node_description` are present. Every other column is a value:
//! an integer (kept exactly, up to 2^64−1 or down to −2^63), a decimal, or
//! empty (`null`). A `timestamp` label (UFM's, in microseconds) gives the
//! data's time when the upstream sends no `X-Snapshot-Ts`.

use crate::consumer::store::snapshot::{Error, KEYED_ID, Layout, MATRIX_ID};

/// UFM's labels, used when `UPSTREAM_LABELS` is not set.
/// `node_guid` is UFM's key, but a label when `UPSTREAM_KEY` keys the rows
/// otherwise (it is text: `0x…`).
pub const UFM_LABELS: [&str; 6] = [
    "timestamp",
    "source_id",
    "tag",
    "node_guid",
    "port_guid",
    "node_description",
];

/// UFM's key, in its two spellings.
const UFM_KEYS: [[&str; 2]; 2] = [["Node_GUID", "Port_Number"], ["node_guid", "port_num"]];

/// What the knobs say about columns (`UPSTREAM_KEY`, `UPSTREAM_LABELS`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Key columns, in order; `None` to pick by the header.
    pub key: Option<Vec<String>>,
    /// Label columns; `None` for UFM's.
    pub labels: Option<Vec<String>>,
}

impl Rules {
    /// How `header`'s columns are read, or why they cannot be.
    pub fn layout(&self, header: &[&str]) -> Result<Layout, Error> {
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let key = match &self.key {
            Some(names) => {
                let mut key = Vec::with_capacity(names.len());
                for name in names {
                    // The knob's own spelling first, then any case.
                    let col = header
                        .iter()
                        .position(|h| h == name)
                        .or_else(|| find(name))
                        .ok_or_else(|| Error::KeyColumn(clip(name)))?;
                    if key.contains(&col) {
                        return Err(Error::RepeatedKey(clip(name)));
                    }
                    key.push(col);
                }
                key
            }
            None if header.first() == Some(&MATRIX_ID) => {
                let mut layout = Layout::matrix(header)?;
                layout.labels = self.label_columns(header, &[]);
                return Ok(layout);
            }
            None => UFM_KEYS
                .iter()
                .find_map(|[guid, port]| Some(vec![find(guid)?, find(port)?]))
                .ok_or_else(|| Error::FirstColumn(clip(header.first().copied().unwrap_or(""))))?,
        };
        let labels = self.label_columns(header, &UFM_LABELS);
        let time = find("timestamp").filter(|c| labels.contains(c) || key.contains(c));
        Ok(Layout {
            id_name: KEYED_ID,
            key,
            labels,
            time,
        })
    }

    /// The header's columns that `UPSTREAM_LABELS` names, or (unset) that
    /// `default` names; any case.
    fn label_columns(&self, header: &[&str], default: &[&str]) -> Vec<usize> {
        let wanted: Vec<&str> = match &self.labels {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => default.to_vec(),
        };
        (0..header.len())
            .filter(|&c| wanted.iter().any(|w| header[c].eq_ignore_ascii_case(w)))
            .collect()
    }
}

/// Untrusted text clipped for an error message.
fn clip(s: &str) -> String {
    crate::json::clipped(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Kind, Limits, Origin, Snapshot};

    const LIMITS: Limits = Limits { max_rows: 1000 };

    fn parse(rules: &Rules, body: &str) -> Result<Snapshot, Error> {
        let origin = Origin {
            id: "t".into(),
            producer_ts_ms: None,
            fetched_ms: 5,
        };
        Snapshot::parse_as(body.as_bytes(), origin, LIMITS, |h| rules.layout(h))
    }

    const UFM: &str = "timestamp,source_id,tag,Node_GUID,port_guid,Port_Number,PortXmitDataExtended,SymbolErrorCounterExtended,Module_Temperature,node_description\n\
        1709652347161873,0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,1,18446744073709551615,0,45.5,leaf-01 HCA-1\n\
        1709652347161873,0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,2,9007199254740993,,,leaf-01 HCA-1\n";

    #[test]
    fn a_ufm_header_is_keyed_by_guid_and_port() {
        let s = parse(&Rules::default(), UFM).unwrap();
        assert_eq!(s.id_name, "id");
        assert_eq!(s.switch_id(0), "0x0c42a1030077e800:1");
        assert_eq!(s.row("0x0c42a1030077e800:2"), Some(1));
        let col = |n: &str| s.column(n).unwrap();
        assert_eq!(
            s.number(0, col("PortXmitDataExtended")),
            "18446744073709551615"
        );
        assert_eq!(s.number(1, col("PortXmitDataExtended")), "9007199254740993");
        assert_eq!(s.number(1, col("SymbolErrorCounterExtended")), "null");
        assert_eq!(s.number(0, col("Module_Temperature")), "45.5");
        assert_eq!(s.number(0, col("tag")), "\"\"");
        assert_eq!(s.number(0, col("Port_Number")), "\"1\"");
        assert_eq!(s.number(0, col("node_description")), "\"leaf-01 HCA-1\"");
        assert_eq!(s.kinds[col("Node_GUID")], Kind::Key);
        assert_eq!(s.kinds[col("timestamp")], Kind::Label);
        assert_eq!(s.kinds[col("Module_Temperature")], Kind::Value);
        // The data's time is the newest timestamp, µs to ms.
        assert_eq!(s.producer_ts_ms(), Some(1_709_652_347_161));
    }

    #[test]
    fn the_lowercase_spelling_is_ufm_too() {
        let body = "timestamp,source_id,tag,node_guid,port_guid,port_num,PortRcvDataExtended\n\
            1709652347161873,0xa,,0xa,0xa,1,5\n1709652347161873,0xa,,0xa,0xa,2,6\n";
        let s = parse(&Rules::default(), body).unwrap();
        assert_eq!(s.switch_id(1), "0xa:2");
        assert_eq!(s.rows(), 2);
    }

    #[test]
    fn keyed_otherwise_ufm_keeps_its_node_guid_as_text() {
        let rules = Rules {
            key: Some(vec!["port_guid".into(), "Port_Number".into()]),
            labels: None,
        };
        let s = parse(&rules, UFM).unwrap();
        assert_eq!(s.switch_id(1), "0x0c42a1030077e800:2");
        let guid = s.column("Node_GUID").unwrap();
        assert_eq!(s.kinds[guid], Kind::Label);
        assert_eq!(s.number(0, guid), "\"0x0c42a1030077e800\"");
    }

    #[test]
    fn the_matrix_is_unchanged() {
        let s = parse(&Rules::default(), "switch_id,a\nsw-0,1\n").unwrap();
        assert_eq!(
            (s.id_name, s.fields.clone()),
            ("switch_id", vec!["a".to_string()])
        );
        assert_eq!(s.kinds, [Kind::Value]);
    }

    #[test]
    fn knobs_key_and_label_anything() {
        let rules = Rules {
            key: Some(vec!["rack".into(), "slot".into()]),
            labels: Some(vec!["model".into()]),
        };
        let body = "rack,slot,model,watts\nr1,3,X-9,120\nr1,4,X-9,\n";
        let s = parse(&rules, body).unwrap();
        assert_eq!(s.switch_id(1), "r1:4");
        assert_eq!(s.fields, ["rack", "slot", "model", "watts"]);
        assert_eq!(s.number(1, 3), "null");
        // UPSTREAM_LABELS replaces UFM's list.
        let rules = Rules {
            key: None,
            labels: Some(vec!["Device_ID".into()]),
        };
        let body = "timestamp,Node_GUID,Port_Number,Device_ID\n1709652347161873,0xa,1,MT4123\n";
        let s = parse(&rules, body).unwrap();
        assert_eq!(s.kinds, [Kind::Value, Kind::Key, Kind::Key, Kind::Label]);
        assert_eq!(s.producer_ts_ms(), None, "timestamp is a value here");
    }

    #[test]
    fn headers_the_knobs_cannot_key_are_refused_naming_the_column() {
        let key = |k: &[&str]| Rules {
            key: Some(k.iter().map(|s| s.to_string()).collect()),
            labels: None,
        };
        let err = |rules: &Rules, body: &str| parse(rules, body).unwrap_err().to_string();
        assert_eq!(
            err(&key(&["rack"]), "a,b\n1,2\n"),
            "csv: key column \"rack\" is not in the header"
        );
        assert_eq!(
            err(&key(&["a", "A"]), "a,b\n1,2\n"),
            "csv: key column \"A\" is named twice"
        );
        assert!(err(&Rules::default(), "timestamp,x\n1,2\n").starts_with(
            "csv: first column is \"timestamp\", expected \"switch_id\" or a UFM Telemetry header"
        ));
        // Ids: empty key cells and duplicates, named as keyed.
        assert_eq!(
            err(&Rules::default(), "Node_GUID,Port_Number,x\n0xa,,1\n"),
            "csv: line 2: empty id"
        );
        assert_eq!(
            err(
                &Rules::default(),
                "Node_GUID,Port_Number,x\n0xa,1,1\n0xa,1,2\n"
            ),
            "csv: line 3: duplicate id \"0xa:1\""
        );
        // A text cell in a value column says how to keep it.
        assert_eq!(
            err(
                &Rules::default(),
                "Node_GUID,Port_Number,Device_ID\n0xa,1,MT4123\n"
            ),
            "csv: line 2: Device_ID is \"MT4123\", not a finite number (a text column is read as text when UPSTREAM_LABELS names it)"
        );
    }

    #[test]
    fn a_header_without_rows_is_an_empty_table() {
        let s = parse(&Rules::default(), UFM.lines().next().unwrap()).unwrap();
        assert_eq!(s.rows(), 0);
        let s = parse(&Rules::default(), "switch_id,a\n").unwrap();
        assert_eq!(s.rows(), 0);
    }
}
