//! Buffers of floats that start on a cache line, as the micro-kernels' aligned loads need.

/// Floats per cache line (64 bytes, one `zmm` register): buffers start on one.
pub(super) const LINE: usize = 16;

/// A `Vec<f32>` whose contents start on a cache line.
///
/// Not `#[derive(Clone)]`: a derived clone would copy the offset into an allocation of its own
/// alignment. [`Clone`] here allocates a buffer that is aligned again.
#[derive(Debug, Default)]
pub(super) struct Aligned {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl Aligned {
    /// `len` zeros.
    pub(super) fn zeroed(len: usize) -> Self {
        let data = vec![0f32; len + LINE];
        let misalign = (data.as_ptr() as usize / std::mem::size_of::<f32>()) % LINE;
        let offset = (LINE - misalign) % LINE;
        Self { data, offset, len }
    }

    /// Holds `len` floats from now on, reallocating only to grow; the contents are left as
    /// they were (zeros where new).
    pub(super) fn resize(&mut self, len: usize) {
        if self.data.len() < len + LINE {
            *self = Self::zeroed(len);
        }
        self.len = len;
    }

    pub(super) fn as_slice(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

impl Clone for Aligned {
    fn clone(&self) -> Self {
        let mut copy = Self::zeroed(self.len);
        copy.as_mut_slice().copy_from_slice(self.as_slice());
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_line(a: &Aligned) -> bool {
        (a.as_slice().as_ptr() as usize).is_multiple_of(LINE * std::mem::size_of::<f32>())
    }

    #[test]
    fn clones_start_on_a_cache_line_and_keep_the_contents() {
        // Many sizes and clones in turn, while other allocations shift the allocator's state:
        // a clone that kept the original's offset would land off the line in some of them.
        let mut keep = Vec::new();
        for len in 1..200 {
            let mut a = Aligned::zeroed(len);
            a.as_mut_slice()
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = i as f32);
            keep.push(vec![0u8; len * 3]);
            let b = a.clone();
            assert!(on_a_line(&a) && on_a_line(&b), "len {len}");
            assert_eq!(a.as_slice(), b.as_slice());
        }
    }
}
