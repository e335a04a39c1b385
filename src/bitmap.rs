//! A fixed-size bit vector with the searches the allocator needs. It lives
//! in ordinary heap memory, never in the code it describes.

/// One bit per granule (or page); a set bit means "in use".
#[derive(Debug, Clone)]
pub(crate) struct Bitmap {
    words: Box<[u64]>,
    bits: usize,
}

impl Bitmap {
    pub(crate) fn new(bits: usize) -> Self {
        Bitmap {
            words: vec![0; bits.div_ceil(64)].into_boxed_slice(),
            bits,
        }
    }

    /// How many bits.
    pub(crate) fn len(&self) -> usize {
        self.bits
    }

    /// Bytes of memory the bit vector itself occupies.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Whether bit `i` is set (one word, no loop: for the hot paths).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Calls `f(word_index, mask)` for each word that `start..start+n`
    /// touches.
    #[inline]
    fn for_words(start: usize, n: usize, mut f: impl FnMut(usize, u64)) {
        let end = start + n;
        let mut i = start;
        while i < end {
            let bit = i % 64;
            let take = (64 - bit).min(end - i);
            let mask = if take == 64 {
                !0
            } else {
                ((1u64 << take) - 1) << bit
            };
            f(i / 64, mask);
            i += take;
        }
    }

    pub(crate) fn set_range(&mut self, start: usize, n: usize) {
        debug_assert!(start + n <= self.bits);
        Self::for_words(start, n, |w, m| {
            debug_assert_eq!(self.words[w] & m, 0, "setting bits that are already set");
            self.words[w] |= m;
        });
    }

    pub(crate) fn clear_range(&mut self, start: usize, n: usize) {
        debug_assert!(start + n <= self.bits);
        Self::for_words(start, n, |w, m| {
            debug_assert_eq!(self.words[w] & m, m, "clearing bits that are not set");
            self.words[w] &= !m;
        });
    }

    /// Sets the range without the "was clear" check (for idempotent
    /// marks such as "page committed").
    pub(crate) fn mark_range(&mut self, start: usize, n: usize) {
        Self::for_words(start, n, |w, m| self.words[w] |= m);
    }

    /// Clears the range without the "was set" check.
    pub(crate) fn unmark_range(&mut self, start: usize, n: usize) {
        Self::for_words(start, n, |w, m| self.words[w] &= !m);
    }

    /// Whether every bit of the range is clear.
    pub(crate) fn all_clear(&self, start: usize, n: usize) -> bool {
        let mut clear = true;
        Self::for_words(start, n, |w, m| clear &= self.words[w] & m == 0);
        clear
    }

    /// Whether every bit of the range is set.
    pub(crate) fn all_set(&self, start: usize, n: usize) -> bool {
        let mut set = true;
        Self::for_words(start, n, |w, m| set &= self.words[w] & m == m);
        set
    }

    /// How many bits of the range are set.
    pub(crate) fn count_range(&self, start: usize, n: usize) -> usize {
        let mut count = 0;
        Self::for_words(start, n, |w, m| {
            count += (self.words[w] & m).count_ones() as usize
        });
        count
    }

    /// How many clear bits follow from `from` on (at most `max`), without
    /// leaving `from`'s word: one load and a count, for taking a run of
    /// granules at once.
    #[inline]
    pub(crate) fn clear_run_in_word(&self, from: usize, max: usize) -> usize {
        if from >= self.bits {
            return 0;
        }
        let bit = from % 64;
        // Bits past the word's end shift in as zeros (clear): cap at it.
        let run = (self.words[from / 64] >> bit).trailing_zeros() as usize;
        run.min(64 - bit).min(self.bits - from).min(max)
    }

    /// The first clear bit at or after `from`, if any.
    #[inline]
    fn next_clear(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        if w >= self.words.len() {
            return None;
        }
        let mut word = !self.words[w] & (!0u64 << (from % 64));
        loop {
            if word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                return (i < self.bits).then_some(i);
            }
            w += 1;
            if w >= self.words.len() {
                return None;
            }
            word = !self.words[w];
        }
    }

    /// The first set bit in `from..end`, if any.
    #[inline]
    fn next_set(&self, from: usize, end: usize) -> Option<usize> {
        if from >= end {
            return None;
        }
        let mut w = from / 64;
        let mut word = self.words[w] & (!0u64 << (from % 64));
        loop {
            if word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                return (i < end).then_some(i);
            }
            w += 1;
            if w * 64 >= end {
                return None;
            }
            word = self.words[w];
        }
    }

    /// The first run of `n` clear bits starting at a multiple of `align`
    /// (a power of two) in `from..self.bits`.
    pub(crate) fn find_clear_run(&self, from: usize, n: usize, align: usize) -> Option<usize> {
        debug_assert!(n > 0 && align.is_power_of_two());
        let mut i = from;
        loop {
            let start = self.next_clear(i)?.next_multiple_of(align);
            if start + n > self.bits {
                return None;
            }
            match self.next_set(start, start + n) {
                None => return Some(start),
                Some(set) => i = set + 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Bitmap;

    /// The obvious count, for comparison.
    fn naive_run(b: &Bitmap, from: usize, max: usize) -> usize {
        let word_end = (from / 64 + 1) * 64;
        (from..b.bits.min(word_end))
            .take(max)
            .take_while(|&i| !b.get(i))
            .count()
    }

    /// The obvious search, for comparison.
    fn naive(b: &Bitmap, from: usize, n: usize, align: usize) -> Option<usize> {
        (from..b.bits)
            .filter(|s| s % align == 0 && s + n <= b.bits)
            .find(|&s| (s..s + n).all(|i| !b.get(i)))
    }

    /// A bit vector of `bits` bits with each bit set where `fill` says
    /// (the pattern repeats), and a search: run length, alignment, start.
    fn case() -> impl Strategy<Value = (Bitmap, usize, usize, usize)> {
        // Word boundaries are where the search's fast paths meet.
        let sizes = prop_oneof![
            Just(1usize),
            Just(63),
            Just(64),
            Just(65),
            Just(127),
            Just(128),
            1usize..1100
        ];
        (sizes, proptest::collection::vec(any::<bool>(), 1..300)).prop_flat_map(|(bits, fill)| {
            let mut b = Bitmap::new(bits);
            for i in 0..bits {
                if fill[i % fill.len()] {
                    b.set_range(i, 1);
                }
            }
            (Just(b), 1usize..70, 0u32..4, 0..bits)
                .prop_map(|(b, n, shift, from)| (b, n, 1 << shift, from))
        })
    }

    proptest! {
        #[test]
        fn search_agrees_with_the_naive_search((b, n, align, from) in case()) {
            prop_assert_eq!(b.find_clear_run(from, n, align), naive(&b, from, n, align));
        }

        #[test]
        fn a_run_in_a_word_agrees_with_the_naive_count((b, n, _align, from) in case()) {
            prop_assert_eq!(b.clear_run_in_word(from, n), naive_run(&b, from, n));
        }

        #[test]
        fn set_then_clear_restores_and_counts(
            bits in 1usize..700,
            start_frac in 0.0f64..1.0,
            len_frac in 0.0f64..1.0,
        ) {
            let mut b = Bitmap::new(bits);
            let start = ((bits as f64 * start_frac) as usize).min(bits - 1);
            let len = 1 + ((bits - start - 1) as f64 * len_frac) as usize;
            b.set_range(start, len);
            prop_assert!(b.all_set(start, len));
            prop_assert_eq!(b.count_range(0, bits), len);
            prop_assert!(b.all_clear(0, start));
            b.clear_range(start, len);
            prop_assert!(b.all_clear(0, bits));
        }
    }

    #[test]
    fn ranges_set_clear_and_count_across_words() {
        let mut b = Bitmap::new(300);
        b.set_range(60, 150);
        assert!(b.all_set(60, 150));
        assert_eq!(b.count_range(0, 300), 150);
        assert!(b.all_clear(0, 60) && b.all_clear(210, 90));
        b.clear_range(100, 10);
        assert_eq!(b.count_range(0, 300), 140);
        assert_eq!(b.find_clear_run(0, 10, 1), Some(0));
        assert_eq!(b.find_clear_run(60, 10, 1), Some(100));
        assert_eq!(b.find_clear_run(60, 11, 1), Some(210));
        assert_eq!(b.find_clear_run(60, 91, 1), None);
    }
}
