"""Index operations for migrations on a large record: CONCURRENTLY on PostgreSQL.

On a record of tens of millions of rows a plain CREATE INDEX would hold back the
worker's inserts for minutes (about 1-2 minutes per index at 20 million rows). These
build and drop indexes CONCURRENTLY on PostgreSQL (so their migration is not atomic);
other databases (SQLite) build them as usual.
"""

from __future__ import annotations

from django.db import migrations


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
