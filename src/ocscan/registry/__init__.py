"""Image references, docker config documents and kubelet-exact credential matching."""
