/*
 * End-to-end latency, split where the broker sees the record: the harness's kbench e2e
 * (../shared/bench) measures intended send -> consumer receipt as one figure; this does
 * the same load (one librdkafka producer at a fixed rate, one consumer assigned every
 * partition, in one process) and records four instants per record:
 *
 *   intended  when the producer was due to send it (as kbench: no coordinated omission)
 *   acked     when the producer's delivery report came (the broker's answer)
 *   appended  the broker's LogAppendTime (the topic must use message.timestamp.type=
 *             LogAppendTime; milliseconds, the broker's clock, which is this machine's)
 *   received  when the consumer's poll returned it
 *
 * All are CLOCK_REALTIME, so they compare with the broker's. Writes one CSV line per
 * record; scripts/e2e-split.sh builds this, runs it and reads the CSV.
 *
 *   e2e-split BOOTSTRAP TOPIC ACKS RATE SECONDS OUT.csv [name=value ...]
 *
 * name=value sets a producer property; c.name=value a consumer one.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct instants {
        int64_t intended, acked, appended_ms, received;
};

static struct instants *records;
static long count;
static volatile long received;
static volatile int producing_done;
static rd_kafka_t *consumer;

static int64_t now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void fail(const char *what, const char *why) {
        fprintf(stderr, "e2e-split: %s: %s\n", what, why);
        exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
        char err[256];
        if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) fail(name, err);
}

/* Delivery report: the record's sequence number travels as its opaque. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        long seq = (long)(intptr_t)m->_private;
        if (seq >= 0 && seq < count) records[seq].acked = m->err ? -1 : now_ns();
}

static void *consume(void *arg) {
        (void)arg;
        int64_t give_up = 0;
        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 20);
                if (m) {
                        if (!m->err && m->len >= 16) {
                                int64_t at = now_ns(), seq;
                                memcpy(&seq, (const char *)m->payload + 8, 8);
                                rd_kafka_timestamp_type_t type;
                                int64_t ts = rd_kafka_message_timestamp(m, &type);
                                if (seq >= 0 && seq < count && records[seq].received == 0) {
                                        records[seq].received = at;
                                        records[seq].appended_ms = type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? ts : -1;
                                        received++;
                                }
                        }
                        rd_kafka_message_destroy(m);
                }
                if (producing_done) {
                        if (received >= count) break;
                        if (!give_up) give_up = now_ns() + 10000000000LL; /* 10 s for stragglers */
                        if (now_ns() > give_up) break;
                }
        }
        return NULL;
}

int main(int argc, char **argv) {
        if (argc < 7) fail("usage", "e2e-split BOOTSTRAP TOPIC ACKS RATE SECONDS OUT.csv [name=value ...]");
        const char *bootstrap = argv[1], *topic = argv[2], *acks = argv[3], *out = argv[6];
        double rate = atof(argv[4]), seconds = atof(argv[5]);
        count = (long)(rate * seconds);
        if (rate <= 0 || count < 1) fail("usage", "RATE and SECONDS must give at least one record");
        records = calloc((size_t)count, sizeof *records);
        if (!records) fail("memory", "cannot hold the instants");

        char err[512];
        rd_kafka_conf_t *pconf = rd_kafka_conf_new(), *cconf = rd_kafka_conf_new();
        set(pconf, "bootstrap.servers", bootstrap);
        set(pconf, "acks", acks);
        set(pconf, "linger.ms", "1"); /* kbench e2e's */
        set(pconf, "enable.idempotence", "false");
        set(pconf, "compression.codec", "none");
        set(cconf, "bootstrap.servers", bootstrap);
        set(cconf, "group.id", "e2e-split");
        set(cconf, "enable.auto.commit", "false");
        set(cconf, "fetch.wait.max.ms", "500"); /* Kafka's default: the broker must wake fetches */
        for (int i = 7; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq) fail(argv[i], "expected name=value");
                *eq = 0;
                if (!strncmp(argv[i], "c.", 2)) set(cconf, argv[i] + 2, eq + 1);
                else set(pconf, argv[i], eq + 1);
        }
        rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
        rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
        if (!producer) fail("producer", err);
        consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
        if (!consumer) fail("consumer", err);

        rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, topic, NULL);
        int partitions = 0;
        for (int i = 0; i < 150 && partitions == 0; i++) {
                const struct rd_kafka_metadata *md;
                if (rd_kafka_metadata(producer, 0, rkt, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (md->topic_cnt == 1 && !md->topics[0].err) partitions = md->topics[0].partition_cnt;
                        rd_kafka_metadata_destroy(md);
                }
                if (!partitions) nanosleep(&(struct timespec){0, 100000000}, NULL);
        }
        if (!partitions) fail(topic, "not in the broker's metadata after 15 s");
        rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(partitions);
        for (int p = 0; p < partitions; p++)
                rd_kafka_topic_partition_list_add(all, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(consumer, all);
        rd_kafka_topic_partition_list_destroy(all);
        for (int i = 0; i < 10; i++) rd_kafka_poll(producer, 100); /* connections up before the clock starts */

        pthread_t reader;
        pthread_create(&reader, NULL, consume, NULL);
        char payload[1024] = {0};
        int64_t period = (int64_t)(1e9 / rate), start = now_ns() + 200000000LL;
        for (long i = 0; i < count; i++) {
                int64_t due = start + i * period;
                if (due > now_ns()) {
                        struct timespec at = {due / 1000000000LL, due % 1000000000LL};
                        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL);
                }
                records[i].intended = due;
                int64_t seq = i;
                memcpy(payload, &due, 8);
                memcpy(payload + 8, &seq, 8);
                while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, payload, sizeof payload, NULL,
                                        0, (void *)(intptr_t)i) == -1)
                        rd_kafka_poll(producer, 1);
                rd_kafka_poll(producer, 0);
        }
        rd_kafka_flush(producer, 30000);
        producing_done = 1;
        pthread_join(reader, NULL);

        FILE *f = fopen(out, "w");
        if (!f) fail(out, "cannot write");
        fprintf(f, "seq,intended_ns,acked_ns,appended_ms,received_ns\n");
        for (long i = 0; i < count; i++)
                fprintf(f, "%ld,%lld,%lld,%lld,%lld\n", i, (long long)records[i].intended, (long long)records[i].acked,
                        (long long)records[i].appended_ms, (long long)records[i].received);
        fclose(f);
        fprintf(stderr, "e2e-split: %ld of %ld records received\n", received, count);
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(producer);
        return received == count ? 0 : 1;
}
