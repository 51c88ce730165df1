from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('liquidations', '0004_worker_requests'),
    ]

    operations = [
        migrations.CreateModel(
            name='DeadLetter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField()),
                ('frame', models.TextField()),
                ('error', models.TextField()),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AddField(
            model_name='workerstate',
            name='last_errors',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
