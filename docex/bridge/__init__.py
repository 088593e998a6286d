"""The bridge to another exchange (`docex bridge run`): moves envelopes, receipts, notices
and directory snapshots between a child hub's `link.parent` queue and the parent hub's
ingress, and between the parent's `link.<child>` queue and the child's ingress.

It is an agent-level service: it knows brokers and the wire, never a hub's tables. The hubs
on both sides verify everything that crosses; the bridge forwards with publisher confirms,
acknowledges only what the other side confirmed, and keeps the operator's accounts
(documents and bytes each way, backlog, age of the oldest waiting envelope, errors by code).

Why a pika bridge and not a RabbitMQ shovel or federation link: a shovel would move bytes
just as safely (ack-mode on-confirm) and faster, but the receiving hub learns who published
a message from its AMQP user_id, and each hop must count (docex-hops) and be accounted for
per link (documents and bytes each way, errors by code, the age of what waits); pause,
resume and drain are the hub operator's, enforced at the broker by the bridge user's
permissions; and in production the two hubs sit on two brokers, where a shovel would keep
the other broker's credentials in the broker's runtime parameters. Moving the bytes is
not the bottleneck (each hub's intake is): see `python -m bench link`.
"""
