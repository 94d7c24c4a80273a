"""caffe2.python.predictor: exporting a trained net for inference, as Caffe2 users do.

- `mobile_exporter.Export(workspace, net, params)` -> (init_net, predict_net): the Model Zoo's
  two-file format (init_net.pb of GivenTensor*Fill ops, predict_net.pb).
- `predictor_exporter.save_to_db(db_type, path, PredictorExportMeta(...))` -> one DB (minidb,
  lmdb) holding a MetaNetDef and the parameters; `prepare_prediction_net(path, db_type)` loads
  it into the workspace and returns the created predict net.
"""
