//! The inverted index of one shard: measurement, tag key=value and field -> series ids (roaring bitmaps).
//!
//! It lives in memory and is rebuilt at open from the `series` column family (every series key holds its
//! measurement, tags and field), so the disk holds each series once and the index costs no writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::Regex;
use roaring::RoaringTreemap;

use crate::keys::SeriesId;
use crate::series::SeriesInfo;

/// A condition on a tag (or, with key `_field`, on the field name).
#[derive(Debug, Clone)]
pub enum Matcher {
    Eq(String, String),
    Ne(String, String),
    Re(String, Regex),
    NotRe(String, Regex),
}

impl Matcher {
    pub fn key(&self) -> &str {
        match self {
            Matcher::Eq(k, _) | Matcher::Ne(k, _) | Matcher::Re(k, _) | Matcher::NotRe(k, _) => k,
        }
    }

    /// Whether a series whose tag `key` has `value` (None when absent, which matches as the empty string,
    /// as in InfluxQL and PromQL) is selected.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self {
            Matcher::Eq(_, x) => v == x,
            Matcher::Ne(_, x) => v != x,
            Matcher::Re(_, re) => re.is_match(v),
            Matcher::NotRe(_, re) => !re.is_match(v),
        }
    }
}

/// One shard's series statistics ([`Index::cardinality`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cardinality {
    pub series: u64,
    /// (measurement, series, series created since the requested point)
    pub measurements: Vec<(String, u64, u64)>,
    /// (tag key, distinct values, series carrying it)
    pub labels: Vec<(String, u64, u64)>,
    /// (tag key, value, series), most series first
    pub pairs: Vec<(String, String, u64)>,
}

/// A boolean filter tree over tag matchers.
#[derive(Debug, Clone)]
pub enum Filter {
    All,
    Match(Matcher),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Default, Debug)]
struct MeasurementIndex {
    all: RoaringTreemap,
    /// tag key -> tag value -> series
    tags: BTreeMap<Arc<str>, BTreeMap<Arc<str>, RoaringTreemap>>,
    fields: BTreeMap<Arc<str>, RoaringTreemap>,
}

#[derive(Default, Debug)]
pub struct Index {
    measurements: BTreeMap<Arc<str>, MeasurementIndex>,
    /// Canonical prefix (measurement and tags) -> its slot in `fields`: a point's fields share one lookup
    /// of the long part, and the prefix is held once, not once per field. aHash: several times faster than
    /// SipHash on these keys and still randomly keyed, so clients choosing tag values cannot force
    /// collisions.
    by_prefix: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    /// Per prefix: its fields' names and series, in the order they were created.
    fields: Vec<Vec<(Arc<str>, SeriesId)>>,
    /// Dense: series ids are assigned 0, 1, 2, ... in apply order.
    series: Vec<Arc<SeriesInfo>>,
}

pub const FIELD_KEY: &str = "_field";

impl Index {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn next_id(&self) -> SeriesId {
        self.series.len() as SeriesId
    }

    /// The slot of a canonical prefix (see [`crate::series::canonical_prefix`]), if any series has it.
    pub fn prefix_slot(&self, prefix: &[u8]) -> Option<u32> {
        self.by_prefix.get(prefix).copied()
    }

    /// The series of `field` under a prefix slot, and its position there. `hint`: where the field probably is
    /// (just after the previous field of the point: a point's fields usually come in the order they were
    /// first written, some perhaps missing), tried before a scan.
    pub fn field_in(&self, slot: u32, field: &str, hint: usize) -> Option<(SeriesId, usize)> {
        let fields = self.fields.get(slot as usize)?;
        if let Some((f, sid)) = fields.get(hint) {
            if f.as_ref() == field {
                return Some((*sid, hint));
            }
        }
        fields.iter().position(|(f, _)| f.as_ref() == field).map(|i| (fields[i].1, i))
    }

    pub fn info(&self, sid: SeriesId) -> Option<&Arc<SeriesInfo>> {
        self.series.get(sid as usize)
    }

    /// Adds a series; ids must arrive densely in order (the engine assigns `next_id()`). The series of one tag
    /// set share one tag list, and every tag list of a measurement shares its key and value strings with
    /// the index's maps, so a series costs its field's entry, not a copy of its tags.
    pub fn insert(&mut self, sid: SeriesId, canonical: &[u8], mut info: SeriesInfo) {
        debug_assert_eq!(sid, self.next_id());
        let n = crate::series::prefix_len(canonical).expect("a canonical key");
        let next = self.fields.len() as u32;
        let slot = match self.by_prefix.get(&canonical[..n]) {
            Some(&slot) => slot,
            None => {
                self.by_prefix.insert(canonical[..n].into(), next);
                next
            }
        };
        if let Some((m, _)) = self.measurements.get_key_value(&*info.measurement) {
            info.measurement = m.clone();
        }
        let m = self.measurements.entry(info.measurement.clone()).or_default();
        if slot == next {
            self.fields.push(Vec::new());
            info.tags = info
                .tags
                .iter()
                .map(|(k, v)| {
                    let k = m.tags.get_key_value(&**k).map_or_else(|| k.clone(), |(k, _)| k.clone());
                    let values = m.tags.entry(k.clone()).or_default();
                    let v = values.get_key_value(&**v).map_or_else(|| v.clone(), |(v, _)| v.clone());
                    (k, v)
                })
                .collect();
        } else {
            let first = self.fields[slot as usize].first().expect("a slot has a series").1;
            info.tags = self.series[first as usize].tags.clone();
        }
        m.all.insert(sid);
        for (k, v) in info.tags.iter() {
            m.tags.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(sid);
        }
        if let Some((f, _)) = m.fields.get_key_value(&*info.field) {
            info.field = f.clone();
        }
        m.fields.entry(info.field.clone()).or_default().insert(sid);
        self.fields[slot as usize].push((info.field.clone(), sid));
        self.series.push(Arc::new(info));
    }

    /// What the series explorer shows of this index: series per measurement (and how many have ids from
    /// `since` on: created after that point), per tag key (distinct values, series carrying it), and the
    /// `top` tag pairs by series.
    pub fn cardinality(&self, since: SeriesId, top: usize) -> Cardinality {
        let mut out = Cardinality { series: self.series.len() as u64, ..Default::default() };
        let mut keys: HashMap<&str, (std::collections::HashSet<&str>, u64)> = HashMap::new();
        let mut pairs: HashMap<(&str, &str), u64> = HashMap::new();
        for (name, m) in &self.measurements {
            let n = m.all.len();
            let new = if since == 0 { n } else { n - m.all.rank(since - 1) };
            out.measurements.push((name.to_string(), n, new));
            for (k, values) in &m.tags {
                let e = keys.entry(k).or_default();
                for (v, sids) in values {
                    e.0.insert(v);
                    e.1 += sids.len();
                    *pairs.entry((k, v)).or_default() += sids.len();
                }
            }
        }
        out.labels = keys.into_iter().map(|(k, (vals, n))| (k.to_string(), vals.len() as u64, n)).collect();
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.pairs = pairs.into_iter().take(top).map(|((k, v), n)| (k.to_string(), v.to_string(), n)).collect();
        out
    }

    /// Series of one measurement.
    pub fn measurement_series(&self, measurement: &str) -> u64 {
        self.measurements.get(measurement).map_or(0, |m| m.all.len())
    }

    pub fn measurements(&self) -> impl Iterator<Item = &str> {
        self.measurements.keys().map(|k| k.as_ref())
    }

    /// Series of the measurements whose name satisfies `pred`, filtered by `filter`.
    pub fn select(&self, measurement: &dyn Fn(&str) -> bool, filter: &Filter) -> RoaringTreemap {
        let mut out = RoaringTreemap::new();
        for (name, m) in &self.measurements {
            if measurement(name) {
                out |= eval(m, filter);
            }
        }
        out
    }

    pub fn tag_keys(&self, measurement: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for (name, m) in &self.measurements {
            if measurement(name) {
                keys.extend(m.tags.keys().map(|k| k.to_string()));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Values of tag `key` among the given series (or all series of matching measurements).
    pub fn tag_values(
        &self,
        measurement: &dyn Fn(&str) -> bool,
        key: &str,
        within: Option<&RoaringTreemap>,
    ) -> Vec<String> {
        let mut vals: Vec<String> = Vec::new();
        for (name, m) in &self.measurements {
            if !measurement(name) {
                continue;
            }
            if let Some(values) = m.tags.get(key) {
                for (v, ids) in values {
                    if within.is_none_or(|w| !w.is_disjoint(ids)) {
                        vals.push(v.to_string());
                    }
                }
            }
        }
        vals.sort();
        vals.dedup();
        vals
    }

    pub fn field_keys(&self, measurement: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for (name, m) in &self.measurements {
            if measurement(name) {
                keys.extend(m.fields.keys().map(|k| k.to_string()));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

fn eval(m: &MeasurementIndex, f: &Filter) -> RoaringTreemap {
    match f {
        Filter::All => m.all.clone(),
        Filter::And(parts) => {
            let mut it = parts.iter();
            let Some(first) = it.next() else { return m.all.clone() };
            let mut acc = eval(m, first);
            for p in it {
                if acc.is_empty() {
                    break;
                }
                acc &= eval(m, p);
            }
            acc
        }
        Filter::Or(parts) => {
            let mut acc = RoaringTreemap::new();
            for p in parts {
                acc |= eval(m, p);
            }
            acc
        }
        Filter::Match(mt) => eval_matcher(m, mt),
    }
}

fn eval_matcher(m: &MeasurementIndex, mt: &Matcher) -> RoaringTreemap {
    let key = mt.key();
    let values: Option<&BTreeMap<Arc<str>, RoaringTreemap>> = if key == FIELD_KEY { None } else { m.tags.get(key) };
    if key == FIELD_KEY {
        let mut acc = RoaringTreemap::new();
        for (f, ids) in &m.fields {
            if mt.matches(Some(f)) {
                acc |= ids;
            }
        }
        return acc;
    }
    // Union of the value bitmaps that match; series without the tag match iff "" matches.
    let mut acc = RoaringTreemap::new();
    let mut with_tag = RoaringTreemap::new();
    if let Some(values) = values {
        if let Matcher::Eq(_, v) = mt {
            if let Some(ids) = values.get(v.as_str()) {
                return ids.clone();
            }
            if !v.is_empty() {
                return RoaringTreemap::new();
            }
        }
        for (v, ids) in values {
            with_tag |= ids;
            if mt.matches(Some(v)) {
                acc |= ids;
            }
        }
    }
    if mt.matches(None) {
        acc |= &m.all - &with_tag;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::canonical_key;

    fn build(rows: &[(&str, &[(&str, &str)], &str)]) -> Index {
        let mut idx = Index::default();
        let mut key = Vec::new();
        for (m, tags, f) in rows {
            let tags: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            canonical_key(m, &tags, f, &mut key);
            let info = SeriesInfo {
                measurement: (*m).into(),
                tags: tags.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect(),
                field: (*f).into(),
                class: 0,
            };
            let sid = idx.next_id();
            idx.insert(sid, &key, info);
        }
        idx
    }

    fn ids(t: &RoaringTreemap) -> Vec<u64> {
        t.iter().collect()
    }

    #[test]
    fn fields_are_found_under_their_prefix_in_any_order() {
        let idx = build(&[
            ("cpu", &[("host", "a")], "user"),
            ("cpu", &[("host", "b")], "user"),
            ("cpu", &[("host", "a")], "system"),
            ("cpu", &[("host", "a")], "idle"),
        ]);
        let mut key = Vec::new();
        crate::series::canonical_prefix("cpu", &[("host", "a")], &mut key);
        let slot = idx.prefix_slot(&key).unwrap();
        // The hint right, wrong, or past the end: the same answer.
        for hint in [0, 1, 2, 7] {
            assert_eq!(idx.field_in(slot, "user", hint), Some((0, 0)));
            assert_eq!(idx.field_in(slot, "system", hint), Some((2, 1)));
            assert_eq!(idx.field_in(slot, "idle", hint), Some((3, 2)));
            assert_eq!(idx.field_in(slot, "steal", hint), None);
        }
        crate::series::canonical_prefix("cpu", &[("host", "b")], &mut key);
        assert_eq!(idx.field_in(idx.prefix_slot(&key).unwrap(), "system", 1), None);
        crate::series::canonical_prefix("cpu", &[("host", "c")], &mut key);
        assert_eq!(idx.prefix_slot(&key), None);
    }

    #[test]
    fn series_share_their_tag_set_and_strings() {
        let idx = build(&[
            ("cpu", &[("host", "a"), ("region", "us")], "user"),
            ("cpu", &[("host", "a"), ("region", "us")], "system"),
            ("cpu", &[("host", "b"), ("region", "us")], "user"),
        ]);
        let info = |sid| idx.info(sid).unwrap().clone();
        let (a_user, a_system, b_user) = (info(0), info(1), info(2));
        // One tag list per tag set.
        assert!(Arc::ptr_eq(&a_user.tags, &a_system.tags));
        assert!(!Arc::ptr_eq(&a_user.tags, &b_user.tags));
        // One copy of each key, value, measurement and field name.
        assert!(Arc::ptr_eq(&a_user.tags[0].0, &b_user.tags[0].0), "key host");
        assert!(Arc::ptr_eq(&a_user.tags[1].1, &b_user.tags[1].1), "value us");
        assert!(Arc::ptr_eq(&a_user.measurement, &b_user.measurement));
        assert!(Arc::ptr_eq(&a_user.field, &b_user.field));
        assert_eq!(b_user.tag("host"), Some("b"));
    }

    #[test]
    fn matchers_follow_influxql_semantics() {
        let idx = build(&[
            ("cpu", &[("host", "a"), ("region", "us")], "user"),
            ("cpu", &[("host", "b"), ("region", "eu")], "user"),
            ("cpu", &[("host", "c")], "user"),
            ("cpu", &[("host", "a"), ("region", "us")], "system"),
            ("mem", &[("host", "a")], "used"),
        ]);
        let cpu = |m: &str| m == "cpu";
        let q = |f: Filter| ids(&idx.select(&cpu, &f));
        let eq = |k: &str, v: &str| Filter::Match(Matcher::Eq(k.into(), v.into()));
        assert_eq!(q(Filter::All), vec![0, 1, 2, 3]);
        assert_eq!(q(eq("host", "a")), vec![0, 3]);
        assert_eq!(q(eq("host", "zz")), Vec::<u64>::new());
        // A missing tag equals the empty string.
        assert_eq!(q(eq("region", "")), vec![2]);
        assert_eq!(q(Filter::Match(Matcher::Ne("region".into(), "us".into()))), vec![1, 2]);
        let re = Regex::new("^(a|b)$").unwrap();
        assert_eq!(q(Filter::Match(Matcher::Re("host".into(), re.clone()))), vec![0, 1, 3]);
        assert_eq!(q(Filter::Match(Matcher::NotRe("host".into(), re))), vec![2]);
        assert_eq!(q(Filter::And(vec![eq("host", "a"), eq(FIELD_KEY, "system")])), vec![3]);
        assert_eq!(q(Filter::Or(vec![eq("host", "c"), eq("region", "eu")])), vec![1, 2]);
        assert_eq!(idx.tag_values(&cpu, "host", None), vec!["a", "b", "c"]);
        let eu = idx.select(&cpu, &eq("region", "eu"));
        assert_eq!(idx.tag_values(&cpu, "host", Some(&eu)), vec!["b"]);
        assert_eq!(idx.tag_keys(&|_| true), vec!["host", "region"]);
        assert_eq!(idx.field_keys(&cpu), vec!["system", "user"]);
        assert_eq!(idx.measurements().collect::<Vec<_>>(), vec!["cpu", "mem"]);
    }
}
