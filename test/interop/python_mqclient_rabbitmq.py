#!/usr/bin/python3
"""A Python EWMS peer for interop tests, built on the same libraries the Python MQClient uses on RabbitMQ
(pika, and the zstd binding for the v2 wire format). It declares its queues exactly as MQClient does:
durable quorum queues on the default exchange with only {"x-queue-type": "quorum"}.

  python_mqclient_rabbitmq.py produce AMQP_URL QUEUE     # JSON values on stdin, one per line -> events
  python_mqclient_rabbitmq.py consume AMQP_URL QUEUE N TIMEOUT_S [amqp-headers]
                                                         # -> {"headers":..,"data":..} per line on stdout;
                                                         #    exit 1 if fewer than N arrived in time;
                                                         #    with amqp-headers also "amqp_headers": the
                                                         #    message's AMQP header table as pika reads it
"""
import json
import sys
import time

import pika  # type: ignore
import zstd  # type: ignore


def encode(data, headers=None):
    return zstd.compress(json.dumps({"headers": headers or {}, "data": data}).encode("utf-8"), 3, 1)


def decode(payload):
    return json.loads(zstd.decompress(payload))


def channel_for(url, queue):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
    return connection, channel


def produce(url, queue):
    connection, channel = channel_for(url, queue)
    channel.confirm_delivery()
    count = 0
    for line in sys.stdin:
        if line.strip():
            channel.basic_publish(exchange="", routing_key=queue, body=encode(json.loads(line)))
            count += 1
    connection.close()
    print(f"produced {count}", file=sys.stderr)


def consume(url, queue, n, timeout_s, with_amqp_headers=False):
    connection, channel = channel_for(url, queue)
    got = 0
    deadline = time.time() + timeout_s
    while got < n and time.time() < deadline:
        method, props, body = channel.basic_get(queue)
        if method is None:
            time.sleep(0.05)
            continue
        envelope = decode(body)
        if with_amqp_headers:
            envelope["amqp_headers"] = {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in (props.headers or {}).items()}
        print(json.dumps(envelope), flush=True)
        channel.basic_ack(method.delivery_tag)
        got += 1
    connection.close()
    return 0 if got >= n else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "produce":
        produce(argv[2], argv[3])
        return 0
    if len(argv) in (6, 7) and argv[1] == "consume":
        return consume(argv[2], argv[3], int(argv[4]), float(argv[5]), len(argv) == 7 and argv[6] == "amqp-headers")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
