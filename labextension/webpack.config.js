// Module ids by order rather than by a hash that includes the checkout's path: the build is then the same
// wherever it runs, so CI can tell a stale committed dcf_jupyter/labextension from a fresh one.
module.exports = {
  optimization: {
    moduleIds: 'natural',
    chunkIds: 'natural'
  }
};
