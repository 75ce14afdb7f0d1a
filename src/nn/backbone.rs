//! What the segmentation network and AffinityNet need of a backbone. A new backbone is one
//! file implementing this trait (`vgg.rs`, `resnet.rs`); the networks hold a
//! `Arc<dyn Backbone>` and never match on which one it is.
use crate::error::Result;
use crate::tensor::Tensor;
use std::path::Path;

pub trait Backbone: std::fmt::Debug + Send + Sync {
    /// The deepest features (B, C, ⌈H/8⌉, ⌈W/8⌉). `train`: batch-norm batch statistics (and
    /// running-statistics updates) instead of the running statistics.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// Features at four depths: the first at stride 4, the others at stride 8 (the last is
    /// [`Backbone::forward`]'s).
    fn forward_levels(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>>;
    /// Channels of [`Backbone::forward`]'s output.
    fn out_channels(&self) -> usize;
    /// Channels of the four levels.
    fn level_channels(&self) -> [usize; 4];
    /// Every tensor a checkpoint holds, with its torchvision name and whether it is trained
    /// (batch-norm running statistics are not).
    fn named_tensors(&self) -> Vec<(String, Tensor, bool)>;
    /// ImageNet weights (torchvision's names, `.pth` or safetensors) into the backbone;
    /// returns how many tensors were loaded.
    fn load_pretrained(&self, path: &Path) -> Result<usize>;

    /// The trained tensors, by name.
    fn named_params(&self) -> Vec<(String, Tensor)> {
        self.named_tensors()
            .into_iter()
            .filter(|t| t.2)
            .map(|(n, t, _)| (n, t))
            .collect()
    }
}
