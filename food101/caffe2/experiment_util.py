"""caffe2.python.experiment_util: ModelTrainerLog, a CSV log of training progress.

    log = experiment_util.ModelTrainerLog("resnet50", args)      # writes resnet50_<time>.log
    log.log(input_count=images_seen, batch_count=it, additional_values={"loss": loss})

The file starts with "# <runtime args>", then a header line and one comma-separated line per
call: time_spent, cumulative_time_spent, input_count, cumulative_input_count,
cumulative_batch_count, inputs_per_sec, then the additional values sorted by name. Each line
also goes to the "experiment_logger" logger; ExternalLogger subclasses receive every record.
"""
import abc
import collections
import datetime
import logging
import socket
import time


class ExternalLogger(abc.ABC):
    @abc.abstractmethod
    def set_runtime_args(self, runtime_args):
        """runtime_args: a dict of the run's arguments."""

    @abc.abstractmethod
    def log(self, log_dict):
        """log_dict: one record (an OrderedDict)."""


class ModelTrainerLog:
    def __init__(self, expname, runtime_args, external_loggers=None):
        now = datetime.datetime.fromtimestamp(time.time())
        self.experiment_id = "%s_%s" % (expname, now.strftime("%Y%m%d_%H%M%S"))
        self.filename = "%s.log" % self.experiment_id
        self.logstr("# %s" % str(runtime_args))
        self.headers = None
        self.start_time = self.last_time = time.time()
        self.last_input_count = 0
        self.external_loggers = list(external_loggers or [])
        if self.external_loggers:
            args = dict(runtime_args) if isinstance(runtime_args, dict) else dict(vars(runtime_args))
            args["experiment_id"] = self.experiment_id
            args["hostname"] = socket.gethostname()
            for logger in self.external_loggers:
                logger.set_runtime_args(args)

    def logstr(self, str):  # noqa: A002 - Caffe2's parameter name
        with open(self.filename, "a") as fh:
            fh.write(str + "\n")
        logging.getLogger("experiment_logger").info(str)

    def log(self, input_count, batch_count, additional_values):
        now = time.time()
        delta_t, delta_count = now - self.last_time, input_count - self.last_input_count
        self.last_time, self.last_input_count = now, input_count
        record = collections.OrderedDict()
        record["time_spent"] = delta_t
        record["cumulative_time_spent"] = now - self.start_time
        record["input_count"] = delta_count
        record["cumulative_input_count"] = input_count
        record["cumulative_batch_count"] = batch_count
        record["inputs_per_sec"] = delta_count / delta_t if delta_t > 0 else 0.0
        for key in sorted(additional_values):
            record[key] = additional_values[key]
        if self.headers is None:
            self.headers = list(record)
            self.logstr(",".join(self.headers))
        self.logstr(",".join(str(v) for v in record.values()))
        for logger in self.external_loggers:
            try:
                logger.log(record)
            except Exception as e:  # noqa: BLE001 - an external sink must not stop training
                logging.warning("Failed to call ExternalLogger: %s", e)
