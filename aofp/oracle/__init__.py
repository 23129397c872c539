"""`aofp_standalone.py oracle`: AOFP's filter scores against oracle pruning (`command`), the
rankings compared (`compare`) and plotted (`plot`)."""
