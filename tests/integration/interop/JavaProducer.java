import static java.nio.charset.StandardCharsets.UTF_8;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Sends article JSON lines with Kafka's own Java client, as a scraper written in Java would (issue 11).
 *
 * <pre>java -cp "$(bash scripts/services.sh kafka-lib)/*" JavaProducer.java BOOTSTRAP TOPIC ARTICLES.jsonl PLAN</pre>
 *
 * Each line of PLAN is one slice, sent by a producer of its own:
 * {@code CODEC KEYED HEADERS MODE FIRST COUNT}, e.g. {@code lz4 keyed headers idempotent 40 20}, where
 * CODEC is a compression.type (none, gzip, snappy, lz4, zstd), KEYED is keyed (key: the article's URL) or unkeyed
 * (null key), HEADERS is headers (a scraper name and a trace id) or noheaders, MODE is plain (no idempotence,
 * acks=1), idempotent (acks=all), transactional-commit or transactional-abort (one transaction: send all, flush,
 * then commit or abort), and FIRST, COUNT pick lines of ARTICLES (FIRST counts from 0).
 * Prints one JSON line per slice: what the brokers acknowledged, by partition. Any error ends it with exit code 1.
 */
public class JavaProducer {
    // The articles are flat JSON objects: the first "url" field is the article's.
    private static final Pattern URL = Pattern.compile("\"url\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: JavaProducer BOOTSTRAP TOPIC ARTICLES.jsonl PLAN");
            System.exit(2);
        }
        List<String> articles = Files.readAllLines(Path.of(args[2]), UTF_8);
        int slice = 0;
        for (String line : Files.readAllLines(Path.of(args[3]), UTF_8)) {
            if (!line.isBlank()) {
                System.out.println(send(args[0], args[1], articles, line.trim().split("\\s+"), slice++));
            }
        }
    }

    static String send(String bootstrap, String topic, List<String> articles, String[] plan, int slice)
            throws Exception {
        String codec = plan[0], mode = plan[3];
        boolean keyed = plan[1].equals("keyed"), headers = plan[2].equals("headers");
        int first = Integer.parseInt(plan[4]), count = Integer.parseInt(plan[5]);

        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        switch (mode) {
            case "plain" -> {
                config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
                config.put(ProducerConfig.ACKS_CONFIG, "1");
            }
            case "idempotent" -> {
                config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
                config.put(ProducerConfig.ACKS_CONFIG, "all");
            }
            case "transactional-commit", "transactional-abort" ->
                config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "interop-" + topic + "-" + slice);
            default -> throw new IllegalArgumentException("unknown mode: " + mode);
        }
        boolean transactional = mode.startsWith("transactional-");

        Map<Integer, Integer> partitions = new TreeMap<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            if (transactional) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (String article : articles.subList(first, first + count)) {
                byte[] key = keyed ? url(article).getBytes(UTF_8) : null;
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, key, article.getBytes(UTF_8));
                if (headers) {
                    record.headers().add("scraper", "java-interop".getBytes(UTF_8))
                            .add("trace-id", UUID.randomUUID().toString().getBytes(UTF_8));
                }
                acks.add(producer.send(record));
            }
            producer.flush();  // the records are in the log before the transaction ends, aborted ones too
            for (Future<RecordMetadata> ack : acks) {
                partitions.merge(ack.get().partition(), 1, Integer::sum);  // get() throws if a send failed
            }
            if (mode.equals("transactional-commit")) {
                producer.commitTransaction();
            } else if (mode.equals("transactional-abort")) {
                producer.abortTransaction();
            }
        }
        String byPartition = partitions.entrySet().stream()
                .map(e -> "\"" + e.getKey() + "\": " + e.getValue()).collect(Collectors.joining(", "));
        int sent = partitions.values().stream().mapToInt(Integer::intValue).sum();
        return String.format("{\"codec\": \"%s\", \"keyed\": %b, \"headers\": %b, \"mode\": \"%s\", "
                + "\"first\": %d, \"sent\": %d, \"partitions\": {%s}}", codec, keyed, headers, mode, first, sent,
                byPartition);
    }

    static String url(String article) {
        Matcher match = URL.matcher(article);
        if (!match.find()) {
            throw new IllegalArgumentException("no url in: " + article.substring(0, Math.min(80, article.length())));
        }
        return match.group(1).replace("\\/", "/");
    }
}
