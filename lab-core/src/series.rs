//! Bounded time series: a ring buffer of samples per connection or session.

use std::collections::VecDeque;

/// A fixed-capacity ring of values; the oldest falls out when full.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    cap: usize,
    values: VecDeque<f64>,
}

impl Series {
    pub fn new(cap: usize) -> Self {
        Series {
            cap: cap.max(1),
            values: VecDeque::with_capacity(cap.max(1)),
        }
    }
    pub fn push(&mut self, v: f64) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }
    pub fn last(&self) -> Option<f64> {
        self.values.back().copied()
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().copied()
    }
    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_oldest() {
        let mut s = Series::new(3);
        for v in 1..=5 {
            s.push(v as f64);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
        assert_eq!(s.max(), 5.0);
        assert_eq!(s.last(), Some(5.0));
    }
}
