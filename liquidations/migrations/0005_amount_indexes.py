"""Covering amount indexes for history's rare amounts ("every liquidation above $5M").

On PostgreSQL the indexes are built and dropped CONCURRENTLY: on a record of tens of
millions of rows a plain CREATE INDEX would hold back the worker's inserts for minutes
(about 1-2 minutes per index at 20 million rows). The new covering amount index is built
before the plain one it replaces is dropped, so the stats' largest-row lookup always has
an index. Other databases (SQLite) build them as usual.
"""

from django.db import migrations, models


def _online(schema_editor) -> dict:
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


class AddIndexOnline(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, **_online(schema_editor))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, **_online(schema_editor))


class RemoveIndexOnline(migrations.RemoveIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            state = from_state.models[app_label, self.model_name_lower]
            index = state.get_index_by_name(self.name)
            schema_editor.remove_index(model, index, **_online(schema_editor))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            state = to_state.models[app_label, self.model_name_lower]
            index = state.get_index_by_name(self.name)
            schema_editor.add_index(model, index, **_online(schema_editor))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("liquidations", "0004_worker_requests"),
    ]

    operations = [
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                fields=["notional_usd"],
                include=("trade_time", "id", "side", "symbol"),
                name="liquidation_usd_cover",
            ),
        ),
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                fields=["symbol", "notional_usd"],
                include=("trade_time", "id", "side"),
                name="liquidation_symbol_usd",
            ),
        ),
        RemoveIndexOnline(
            model_name="liquidation",
            name="liquidation_usd",
        ),
    ]
