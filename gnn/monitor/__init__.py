"""Operating the models: drift and skew measured against the production model's training reference.

One job per module:

* :mod:`~gnn.monitor.binning`: reference quantile bins, bin counts, PSI and KS;
* :mod:`~gnn.monitor.reference`: the training reference saved with each model version;
* :mod:`~gnn.monitor.families`: feature families for roll-ups;
* :mod:`~gnn.monitor.drift`: feature drift per feature and family;
* :mod:`~gnn.monitor.prediction`: score and band drift, fraud rate by cohort;
* :mod:`~gnn.monitor.skew`: served rows against batch rows of the same users;
* :mod:`~gnn.monitor.graph`: degrees, identifier hubs, component sizes;
* :mod:`~gnn.monitor.rings`: ring-model inputs outside their training range (refuse to store rings);
* :mod:`~gnn.monitor.alerts`: thresholds from settings;
* :mod:`~gnn.monitor.metrics`: the Prometheus textfile;
* :mod:`~gnn.monitor.run`: one run, saved with its history;
* :mod:`~gnn.monitor.report`: the HTML report with PNG charts.
"""
