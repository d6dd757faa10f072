package io.eventbinder.interop;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.function.Function;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Bean;
import org.springframework.messaging.Message;
import org.springframework.messaging.MessageHeaders;
import org.springframework.messaging.support.MessageBuilder;

/**
 * A Spring Cloud Stream app for eventbinder's interoperability tests: one function
 * bean per scenario, all named in {@code spring.cloud.function.definition}; the tests
 * give each binding's destination, group and options on the command line (and may
 * narrow the definition to the functions they use).
 */
@SpringBootApplication
public class InteropApp {

    /** The header that carries the partition key of {@link #partitioned()}. */
    static final String PARTITION_KEY = "pkey";

    public static void main(String[] args) {
        SpringApplication.run(InteropApp.class, args);
    }

    /** Payload and every incoming header, plus {@code x-relayed-by: spring}. */
    @Bean
    public Function<Message<byte[]>, Message<byte[]>> relay() {
        return in -> MessageBuilder.withPayload(in.getPayload())
                .copyHeaders(in.getHeaders())
                .setHeader("x-relayed-by", "spring")
                .build();
    }

    /** Always fails, so that the binder's own dead-lettering writes a dead letter. */
    @Bean
    public Consumer<Message<byte[]>> fail() {
        return in -> {
            throw new IllegalStateException("spring says no");
        };
    }

    /**
     * A member of a consumer group shared with eventbinder: forwards the payload with
     * {@code x-handled-by: spring} and the partition it came from (Kafka).
     */
    @Bean
    public Function<Message<byte[]>, Message<byte[]>> member() {
        return in -> {
            MessageBuilder<byte[]> out = MessageBuilder.withPayload(in.getPayload())
                    .setHeader("x-handled-by", "spring");
            Object partition = in.getHeaders().get("kafka_receivedPartitionId");
            if (partition != null) {
                out.setHeader("x-source-partition", partition.toString());
            }
            return out.build();
        };
    }

    /**
     * Republishes the payload to a partitioned output whose
     * {@code partitionKeyExpression} is {@code headers['pkey']}: the key is the incoming
     * {@code pkey} header as a String (Kafka hands headers without Spring's type
     * information over as bytes, and a byte[] key would hash by identity).
     */
    @Bean
    public Function<Message<byte[]>, Message<byte[]>> partitioned() {
        return in -> {
            MessageBuilder<byte[]> out = MessageBuilder.withPayload(in.getPayload());
            Object key = in.getHeaders().get(PARTITION_KEY);
            if (key != null) {
                out.setHeader(PARTITION_KEY, text(key));
            }
            return out.build();
        };
    }

    /**
     * Reads a Kafka dead-letter record's headers as Spring Kafka's
     * DeadLetterPublishingRecoverer writes them (x-original-partition as a 4-byte
     * big-endian int; -offset and -timestamp as 8-byte big-endian longs; the rest
     * UTF-8) and emits what it decoded as a JSON object. Spring Kafka's own
     * {@code kafka_dlt-*} names are read when the {@code x-*} ones are absent. A header
     * that cannot be decoded is named under {@code errors} instead of failing.
     */
    @Bean
    public Function<Message<byte[]>, Message<String>> dlqinspect(ObjectMapper mapper) {
        return in -> {
            MessageHeaders headers = in.getHeaders();
            Map<String, Object> out = new LinkedHashMap<>();
            Map<String, String> errors = new TreeMap<>();
            out.put("topic", string(headers, "original-topic"));
            out.put("partition", binary(headers, "original-partition", 4, errors));
            out.put("offset", binary(headers, "original-offset", 8, errors));
            out.put("timestamp", binary(headers, "original-timestamp", 8, errors));
            out.put("timestampType", string(headers, "original-timestamp-type"));
            out.put("consumerGroup", string(headers, "original-consumer-group"));
            out.put("exceptionFqcn", string(headers, "exception-fqcn"));
            out.put("exceptionCauseFqcn", string(headers, "exception-cause-fqcn"));
            out.put("exceptionMessage", string(headers, "exception-message"));
            Object trace = header(headers, "exception-stacktrace");
            out.put("stacktraceLength", trace == null ? null : text(trace).length());
            out.put("payload", new String(in.getPayload(), StandardCharsets.UTF_8));
            out.put("headerNames", new TreeMap<>(headers).keySet());
            out.put("errors", errors);
            try {
                return MessageBuilder.withPayload(mapper.writeValueAsString(out))
                        .setHeader(MessageHeaders.CONTENT_TYPE, "application/json")
                        .build();
            }
            catch (JsonProcessingException e) {
                throw new IllegalStateException(e);
            }
        };
    }

    /** The value of {@code x-<suffix>}, else {@code kafka_dlt-<suffix>}, else null. */
    private static Object header(MessageHeaders headers, String suffix) {
        Object value = headers.get("x-" + suffix);
        return value != null ? value : headers.get("kafka_dlt-" + suffix);
    }

    private static String string(MessageHeaders headers, String suffix) {
        Object value = header(headers, suffix);
        return value == null ? null : text(value);
    }

    /** A big-endian int (size 4) or long (size 8), as Spring Kafka reads them back. */
    private static Long binary(MessageHeaders headers, String suffix, int size,
            Map<String, String> errors) {
        Object value = header(headers, suffix);
        if (value == null) {
            return null;
        }
        if (value instanceof Number number) {
            return number.longValue();
        }
        if (!(value instanceof byte[] bytes)) {
            errors.put(suffix, "a " + value.getClass().getName() + ", not bytes: " + value);
            return null;
        }
        if (bytes.length != size) {
            errors.put(suffix, bytes.length + " bytes, expected " + size + " (big-endian binary)");
            return null;
        }
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        return size == 4 ? buffer.getInt() : buffer.getLong();
    }

    private static String text(Object value) {
        return value instanceof byte[] bytes ? new String(bytes, StandardCharsets.UTF_8)
                : value.toString();
    }
}
