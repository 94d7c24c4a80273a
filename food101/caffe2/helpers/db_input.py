"""brew.db_input: batches of TensorProtos records from a DB (LMDB), as Caffe2's examples read
MNIST/CIFAR: a CreateDB reader `dbreader_<db>` in param_init_net, TensorProtosDBInput in net."""


def db_input(model, blobs_out, batch_size, db, db_type):
    # no **kwargs, as Caffe2's: brew then copies none of the model's arg_scope (order,
    # use_cudnn, ...) onto the reader ops
    dbreader = model.param_init_net.CreateDB([], "dbreader_" + db, db=db, db_type=db_type)
    return model.net.TensorProtosDBInput(dbreader, blobs_out, batch_size=batch_size)
