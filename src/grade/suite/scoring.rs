//! The group tree, once walked: every group has cases, scores are shared out top down from
//! `secret`, `require_pass` names resolve to earlier pass-fail groups, and cases are put in run
//! order. Pure checks over the model; this room reads no files.

use std::path::PathBuf;

use super::{malformed, show_score, Aggregation, Child, Suite, SuiteError, DEFAULT_SECRET_SCORE};

/// Scores are compared with this much slack (they are shared out as fractions).
const SCORE_EPSILON: f64 = 1e-9;

impl Suite {
    /// Every group needs a case somewhere below it; `secret` needs at least one.
    pub(super) fn check_not_empty(&self, dirs: &[PathBuf]) -> Result<(), SuiteError> {
        for (index, group) in self.groups.iter().enumerate() {
            if Some(index) != self.sample && self.cases_in(index).is_empty() {
                return Err(malformed(
                    &dirs[index],
                    format!(
                        "test group `{}` has no test cases: add NAME.in + NAME.ans files to it",
                        group.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Give every group and case its maximum score, top down from `secret`.
    pub(super) fn share_scores(
        &mut self,
        dirs: &[PathBuf],
        explicit: &[Option<f64>],
    ) -> Result<(), SuiteError> {
        let secret = self.secret;
        self.groups[secret].max_score = explicit[secret].unwrap_or(DEFAULT_SECRET_SCORE);
        let mut pending = vec![secret];
        while let Some(index) = pending.pop() {
            let group = self.groups[index].clone();
            let dir = &dirs[index];
            let config = dir.join("test_group.yaml");
            let subgroup_max = |child: &Child| match *child {
                Child::Group(sub) => explicit[sub],
                Child::Case(_) => None,
            };
            let shares: Vec<f64> = match group.aggregation {
                Aggregation::Sum => {
                    let given: f64 = group.children.iter().filter_map(subgroup_max).sum();
                    let open = group
                        .children
                        .iter()
                        .filter(|child| subgroup_max(child).is_none())
                        .count();
                    if given > group.max_score + SCORE_EPSILON {
                        return Err(malformed(
                            &config,
                            format!(
                                "the max_score of the groups in `{}` add up to {}, more than its max_score {}: lower them or raise max_score",
                                group.name,
                                show_score(given),
                                show_score(group.max_score)
                            ),
                        ));
                    }
                    if open == 0 && given < group.max_score - SCORE_EPSILON {
                        return Err(malformed(
                            &config,
                            format!(
                                "the max_score of the groups in `{}` add up to {}, less than its max_score {}: \
                                 no submission could get full marks; make them add up (or leave one out to give it the rest)",
                                group.name,
                                show_score(given),
                                show_score(group.max_score)
                            ),
                        ));
                    }
                    let rest = if open == 0 {
                        0.0
                    } else {
                        (group.max_score - given).max(0.0) / open as f64
                    };
                    group
                        .children
                        .iter()
                        .map(|child| subgroup_max(child).unwrap_or(rest))
                        .collect()
                }
                Aggregation::Min | Aggregation::PassFail => {
                    for child in &group.children {
                        if let Some(given) = subgroup_max(child) {
                            if (given - group.max_score).abs() > SCORE_EPSILON {
                                let Child::Group(sub) = *child else {
                                    unreachable!()
                                };
                                return Err(malformed(
                                    &dirs[sub].join("test_group.yaml"),
                                    format!(
                                        "max_score {} differs from the max_score {} of `{}`, whose score_aggregation is {}: \
                                         every child of a {} group is worth the whole group; remove max_score here",
                                        show_score(given),
                                        show_score(group.max_score),
                                        group.name,
                                        group.aggregation.as_str(),
                                        group.aggregation.as_str()
                                    ),
                                ));
                            }
                        }
                    }
                    vec![group.max_score; group.children.len()]
                }
            };
            for (child, share) in group.children.iter().zip(shares) {
                match *child {
                    Child::Case(case) => {
                        self.cases[case].max_score = match group.aggregation {
                            Aggregation::PassFail => 0.0,
                            Aggregation::Sum | Aggregation::Min => share,
                        };
                    }
                    Child::Group(sub) => {
                        if group.aggregation == Aggregation::PassFail
                            && self.groups[sub].aggregation != Aggregation::PassFail
                        {
                            return Err(malformed(
                                &dirs[sub].join("test_group.yaml"),
                                format!(
                                    "score_aggregation {} inside `{}`, which is pass-fail: groups inside a pass-fail group must be pass-fail too",
                                    self.groups[sub].aggregation.as_str(),
                                    group.name
                                ),
                            ));
                        }
                        self.groups[sub].max_score = share;
                        pending.push(sub);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn resolve_require_pass(
        &mut self,
        dirs: &[PathBuf],
        names: &[Vec<String>],
    ) -> Result<(), SuiteError> {
        for index in 0..self.groups.len() {
            let mut required = Vec::new();
            for name in &names[index] {
                let config = dirs[index].join("test_group.yaml");
                let found = self.groups.iter().position(|group| &group.name == name);
                let Some(target) = found else {
                    if name == "sample" {
                        // No sample cases: nothing to pass.
                        continue;
                    }
                    return Err(malformed(
                        &config,
                        format!("require_pass names `{name}`, which is not a test group (names are paths under data/, e.g. `sample` or `secret/group1`)"),
                    ));
                };
                let this = &self.groups[index].name;
                if name.as_str() >= this.as_str() || this.starts_with(&format!("{name}/")) {
                    return Err(malformed(
                        &config,
                        format!("require_pass names `{name}`, which does not come before `{this}`: a group can only require earlier groups"),
                    ));
                }
                if self.groups[target].aggregation != Aggregation::PassFail {
                    return Err(malformed(
                        &config,
                        format!(
                            "require_pass names `{name}`, whose score_aggregation is not pass-fail"
                        ),
                    ));
                }
                required.push(target);
            }
            self.groups[index].require_pass = required;
        }
        Ok(())
    }

    /// Cases were collected depth-first in directory order; make `cases` the run order and
    /// renumber the references to them.
    pub(super) fn order_cases(&mut self) {
        let mut order = Vec::new();
        if let Some(sample) = self.sample {
            self.collect_cases(sample, &mut order);
        }
        self.collect_cases(self.secret, &mut order);
        let mut new_index = vec![0; self.cases.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        self.cases = order.iter().map(|&old| self.cases[old].clone()).collect();
        for group in &mut self.groups {
            for child in &mut group.children {
                if let Child::Case(case) = child {
                    *case = new_index[*case];
                }
            }
        }
    }
}
