<?php
/*
 * The stand-ins the MikoPBX life-cycle harness needs: only what cannot load
 * here. Everything else is MikoPBX Core's own code (the release's src/, see
 * .ci/setup-mikopbx).
 *
 * 1. Phalcon (a C extension Debian does not package): the DI container and
 *    Injectable (services by name, closures called with the parameters given),
 *    Config (path() with a default), the events manager (attach() kept, see 2),
 *    Message, Relation's constants.
 * 2. The ORM: Phalcon\Mvc\Model, under MikoPBX's real models (ModelsBase,
 *    PbxExtensionModules, PbxSettings, CustomFiles, Codecs... are the
 *    release's classes). Rows live in the real SQLite database through PDO:
 *    find/findFirst with PHQL conditions, bind, columns, order and limit;
 *    findFirstBy<Field>/findBy<Field>; save() (insert or update by id),
 *    delete(), toArray(), read/writeAttribute. As Phalcon does, only the
 *    table's own columns are read and written (an unmigrated table simply
 *    lacks some). Model events are not fired: in MikoPBX they feed its workers
 *    (WorkerModelsEvents, through Beanstalk) and clear the model cache; the
 *    harness runs the worker action they lead to (ReloadModuleStateAction)
 *    itself, and keeps no model cache (see 3), so nothing goes stale.
 * 3. Redis: the managed cache (models' caches: always a miss, as right after
 *    ModelsBase::clearCache) and the Redis client (module installation state:
 *    kept in memory for the process, which is all one REST call lasts).
 * 4. Services that talk to other daemons: the event bus to the browser
 *    (nchan), the mutex (one harness process at a time: runs the closure), the
 *    license server (no module of ours is licensed), syslog (a log file the
 *    tests read), translation (returns the message key, with its parameters),
 *    the error reporters (Sentry: none; errors go to syslog as MikoPBX logs
 *    them too).
 * 5. Whoops, a composer package the release's tarball does not carry (it has
 *    no vendor/): MikoPBX prints a caught exception with it; here the same
 *    "class: message in file:line" text.
 */

// No strict_types: Phalcon (C) assigns with PHP's usual coercion.

namespace Phalcon\Di {
    interface DiInterface
    {
    }

    interface ServiceProviderInterface
    {
        public function register(DiInterface $di): void;
    }

    class Di implements DiInterface
    {
        private static ?Di $default = null;
        /** @var array<string, mixed> */
        private array $definitions = [];
        /** @var array<string, mixed> */
        private array $instances = [];

        public function __construct()
        {
            if (self::$default === null) {
                self::$default = $this;
            }
        }

        public static function getDefault(): ?Di
        {
            return self::$default;
        }

        public static function setDefault(Di $di): void
        {
            self::$default = $di;
        }

        public function set(string $name, $definition, bool $shared = false): void
        {
            $this->definitions[$name] = $definition;
            unset($this->instances[$name]);
        }

        public function setShared(string $name, $definition): void
        {
            $this->set($name, $definition, true);
        }

        public function has(string $name): bool
        {
            return array_key_exists($name, $this->definitions);
        }

        public function remove(string $name): void
        {
            unset($this->definitions[$name], $this->instances[$name]);
        }

        public function get(string $name, ?array $parameters = null)
        {
            if (!$this->has($name)) {
                throw new \RuntimeException("Service '$name' wasn't found in the dependency injection container");
            }
            $definition = $this->definitions[$name];
            if ($definition instanceof \Closure) {
                $bound = \Closure::bind($definition, $this);
                return $parameters ? $bound(...$parameters) : $bound();
            }
            if (is_string($definition) && class_exists($definition)) {
                return new $definition();
            }
            return $definition;
        }

        public function getShared(string $name, ?array $parameters = null)
        {
            if (!array_key_exists($name, $this->instances)) {
                $this->instances[$name] = $this->get($name, $parameters);
            }
            return $this->instances[$name];
        }
    }

    abstract class Injectable
    {
        public function getDI(): Di
        {
            return Di::getDefault();
        }

        public function __get(string $name)
        {
            $di = Di::getDefault();
            if ($name === 'di') {
                return $di;
            }
            if ($di->has($name)) {
                return $di->getShared($name);
            }
            trigger_error("Access to undefined property $name", E_USER_WARNING);
            return null;
        }
    }
}

namespace Phalcon\Config {
    class Config implements \ArrayAccess
    {
        /** @var array<string, mixed> */
        private array $data;

        public function __construct(array $data = [])
        {
            $this->data = $data;
        }

        public function path(string $path, $default = null, string $delimiter = '.')
        {
            $node = $this->data;
            foreach (explode($delimiter, $path) as $key) {
                if (!is_array($node) || !array_key_exists($key, $node)) {
                    return $default;
                }
                $node = $node[$key];
            }
            return is_array($node) ? new Config($node) : $node;
        }

        public function get(string $key, $default = null)
        {
            return $this->path($key, $default);
        }

        public function __get(string $key)
        {
            return $this->path($key);
        }

        public function toArray(): array
        {
            return $this->data;
        }

        public function offsetExists($offset): bool
        {
            return array_key_exists($offset, $this->data);
        }

        public function offsetGet($offset): mixed
        {
            return $this->path((string) $offset);
        }

        public function offsetSet($offset, $value): void
        {
            $this->data[$offset] = $value;
        }

        public function offsetUnset($offset): void
        {
            unset($this->data[$offset]);
        }
    }
}

namespace Phalcon\Events {
    class Event
    {
    }

    class Manager
    {
        /** @var array<int, array{0: string, 1: callable}> */
        public array $listeners = [];

        public function attach(string $type, $handler): void
        {
            $this->listeners[] = [$type, $handler];
        }
    }
}

namespace Phalcon\Messages {
    interface MessageInterface
    {
    }

    class Message implements MessageInterface
    {
        public function __construct(private string $message, private $field = '', private string $type = '')
        {
        }

        public function getMessage(): string
        {
            return $this->message;
        }

        public function __toString(): string
        {
            return $this->message;
        }
    }
}

namespace Phalcon\Mvc\Model {
    class Relation
    {
        public const ACTION_CASCADE = 2;
        public const ACTION_RESTRICT = 1;
        public const NO_ACTION = 0;
    }

    /** What find() returns: the rows, as models, or as arrays with 'columns'. */
    class Resultset implements \IteratorAggregate, \Countable
    {
        /** @param array<int, mixed> $rows */
        public function __construct(private array $rows)
        {
        }

        public function getIterator(): \ArrayIterator
        {
            return new \ArrayIterator($this->rows);
        }

        public function count(): int
        {
            return count($this->rows);
        }

        public function getFirst()
        {
            return $this->rows[0] ?? null;
        }

        public function toArray(): array
        {
            return array_map(static fn($row) => is_array($row) ? $row : $row->toArray(), $this->rows);
        }

        public function delete(): bool
        {
            foreach ($this->rows as $row) {
                if (!is_array($row) && !$row->delete()) {
                    return false;
                }
            }
            return true;
        }
    }
}

namespace Phalcon\Mvc {
    use Phalcon\Di\Di;
    use Phalcon\Di\Injectable;
    use Phalcon\Mvc\Model\Resultset;

    /**
     * Phalcon's ORM on PDO (see this file's header, 2). The connection is the
     * DI's 'db' service (MikoPBX's main database; FeatpkgHarness\Database).
     */
    abstract class Model extends Injectable
    {
        /** @var array<string, bool> classes whose initialize() has run (Phalcon runs it once per class) */
        private static array $initialized = [];
        /** @var array<string, string> */
        private static array $sources = [];
        private ?object $eventsManager = null;
        /** Whether this record is a row of the table (read from it, or saved), and its key there. */
        private bool $stored = false;
        private $storedKey = null;

        final public function __construct()
        {
            $class = static::class;
            if (!isset(self::$initialized[$class])) {
                self::$initialized[$class] = true;
                if (method_exists($this, 'initialize')) {
                    $this->initialize();
                }
            }
        }

        public static function setup(array $options): void
        {
        }

        protected function setSource(string $source): void
        {
            self::$sources[static::class] = $source;
        }

        public function getSource(): string
        {
            return self::source();
        }

        /** The table: as initialize() set it, else MikoPBX's m_<Model> convention. */
        private static function source(): string
        {
            $class = static::class;
            if (isset(self::$sources[$class])) {
                return self::$sources[$class];
            }
            $short = substr($class, (int) strrpos($class, '\\') + 1);
            return "m_$short";
        }

        protected function keepSnapshots(bool $keep): void
        {
        }

        protected function useDynamicUpdate(bool $dynamic): void
        {
        }

        protected function skipAttributes(array $attributes): void
        {
        }

        protected function hasMany($fields, string $referenceModel, $referencedFields, array $options = []): void
        {
        }

        protected function hasOne($fields, string $referenceModel, $referencedFields, array $options = []): void
        {
        }

        protected function belongsTo($fields, string $referenceModel, $referencedFields, array $options = []): void
        {
        }

        public function setEventsManager($manager): void
        {
            $this->eventsManager = $manager;
        }

        public function getMessages(): array
        {
            return [];
        }

        private static function pdo(): \PDO
        {
            return Di::getDefault()->getShared('db')->pdo();
        }

        /** @return array<int, string> the table's columns */
        private static function columns(): array
        {
            $table = self::source();
            $columns = [];
            foreach (self::pdo()->query('PRAGMA table_info("' . $table . '")') as $column) {
                $columns[] = $column['name'];
            }
            if ($columns === []) {
                throw new \RuntimeException("Table '$table' doesn't exist in database when dumping meta-data for " . static::class);
            }
            return $columns;
        }

        /** The table's primary key column (`id` for most of MikoPBX's tables, `key` for m_PbxSettings). */
        private static function primaryKey(): string
        {
            foreach (self::pdo()->query('PRAGMA table_info("' . self::source() . '")') as $column) {
                if ((int) $column['pk'] === 1) {
                    return $column['name'];
                }
            }
            return 'id';
        }

        /** PHQL conditions as SQLite: `:name:` placeholders, "strings", [quoted] names. */
        private static function sql(string $phql): string
        {
            $sql = preg_replace('/:([A-Za-z_][A-Za-z0-9_]*):/', ':$1', $phql);
            $sql = preg_replace('/"([^"]*)"/', "'\$1'", $sql);
            return str_replace(['[', ']'], '"', $sql);
        }

        /** @return array<int, mixed> */
        private static function select($parameters, ?int $limit = null): array
        {
            if (is_string($parameters)) {
                $parameters = ['conditions' => $parameters];
            } elseif (is_numeric($parameters)) {
                $parameters = ['conditions' => 'id = :id:', 'bind' => ['id' => $parameters]];
            }
            $parameters = $parameters ?? [];
            $conditions = $parameters['conditions'] ?? ($parameters[0] ?? null);
            $columns = $parameters['columns'] ?? null;
            $sql = 'SELECT ' . ($columns === null ? '*' : (is_array($columns) ? implode(', ', $columns) : $columns))
                . ' FROM "' . self::source() . '"';
            if ($conditions !== null && $conditions !== '') {
                $sql .= ' WHERE ' . self::sql($conditions);
            }
            if (isset($parameters['order'])) {
                $sql .= ' ORDER BY ' . self::sql($parameters['order']);
            }
            $limit = $limit ?? ($parameters['limit'] ?? null);
            if ($limit !== null) {
                $sql .= ' LIMIT ' . (int) $limit;
            }
            $statement = self::pdo()->prepare($sql);
            foreach ($parameters['bind'] ?? [] as $name => $value) {
                $statement->bindValue(is_int($name) ? $name + 1 : ":$name", $value);
            }
            $statement->execute();
            $rows = [];
            foreach ($statement->fetchAll(\PDO::FETCH_ASSOC) as $row) {
                if ($columns !== null) {
                    $rows[] = $row;
                    continue;
                }
                $model = new static();
                foreach ($row as $name => $value) {
                    $model->writeAttribute($name, $value);
                }
                $model->stored = true;
                $model->storedKey = $row[self::primaryKey()] ?? null;
                $rows[] = $model;
            }
            return $rows;
        }

        public static function find($parameters = null): Resultset
        {
            return new Resultset(self::select($parameters));
        }

        public static function findFirst($parameters = null)
        {
            return self::select($parameters, 1)[0] ?? null;
        }

        public static function __callStatic(string $method, array $arguments)
        {
            foreach (['findFirstBy' => 'findFirst', 'findBy' => 'find'] as $prefix => $finder) {
                if (strncmp($method, $prefix, strlen($prefix)) === 0) {
                    $field = lcfirst(substr($method, strlen($prefix)));
                    return static::$finder(['conditions' => "[$field] = :value:", 'bind' => ['value' => $arguments[0]]]);
                }
            }
            throw new \BadMethodCallException("The static method '$method' doesn't exist on model " . static::class);
        }

        public function readAttribute(string $name)
        {
            return $this->$name ?? null;
        }

        public function writeAttribute(string $name, $value): void
        {
            $this->$name = $value;
        }

        public function toArray($columns = null): array
        {
            $out = [];
            foreach (self::columns() as $column) {
                $out[$column] = property_exists($this, $column) ? $this->$column : null;
            }
            return $out;
        }

        public function save(): bool
        {
            $key = self::primaryKey();
            $values = [];
            foreach (self::columns() as $column) {
                if (property_exists($this, $column) && !($column === $key && $key === 'id' && empty($this->id))) {
                    $values[$column] = $this->$column;
                }
            }
            $pdo = self::pdo();
            $table = self::source();
            $bind = static fn(array $v) => array_combine(array_map(static fn($c) => ":$c", array_keys($v)), $v);
            if ($this->stored) {
                $sets = implode(', ', array_map(static fn($c) => "\"$c\" = :$c", array_keys($values)));
                $statement = $pdo->prepare("UPDATE \"$table\" SET $sets WHERE \"$key\" = :harness_key");
                $statement->execute($bind($values) + [':harness_key' => $this->storedKey]);
            } else {
                $names = implode(', ', array_map(static fn($c) => "\"$c\"", array_keys($values)));
                $marks = implode(', ', array_map(static fn($c) => ":$c", array_keys($values)));
                $pdo->prepare("INSERT INTO \"$table\" ($names) VALUES ($marks)")->execute($bind($values));
                if ($key === 'id' && empty($this->id)) {
                    $this->id = (string) $pdo->lastInsertId();
                }
            }
            $this->stored = true;
            $this->storedKey = $this->$key;
            return true;
        }

        public function update(): bool
        {
            return $this->save();
        }

        public function create(): bool
        {
            return $this->save();
        }

        public function delete(): bool
        {
            if (!$this->stored) {
                return false;
            }
            $key = self::primaryKey();
            $statement = self::pdo()->prepare('DELETE FROM "' . self::source() . '" WHERE "' . $key . '" = :harness_key');
            $statement->execute([':harness_key' => $this->storedKey]);
            $this->stored = false;
            return true;
        }
    }
}

namespace Whoops\Handler {
    class PlainTextHandler
    {
    }

    class JsonResponseHandler
    {
    }
}

namespace Whoops {
    class Run
    {
        public function pushHandler($handler): void
        {
        }

        public function register(): void
        {
        }

        public function allowQuit(bool $quit): void
        {
        }

        public function handleException(\Throwable $e): string
        {
            return get_class($e) . ': ' . $e->getMessage() . ' in ' . $e->getFile() . ':' . $e->getLine();
        }
    }
}

namespace {
    /**
     * The phpredis client MikoPBX type-hints (\\Redis), kept in memory
     * (header, 3); with $keep false, it forgets every write.
     */
    class Redis
    {
        /** @var array<string, mixed> */
        private array $data = [];

        public function __construct(private bool $keep = true)
        {
        }

        public function get(string $key)
        {
            return $this->data[$key] ?? false;
        }

        public function set(string $key, $value, $options = null): bool
        {
            if ($this->keep) {
                $this->data[$key] = $value;
            }
            return true;
        }

        public function setex(string $key, int $ttl, $value): bool
        {
            return $this->set($key, $value);
        }

        public function del(...$keys): int
        {
            $n = 0;
            foreach ($keys as $key) {
                if (array_key_exists($key, $this->data)) {
                    unset($this->data[$key]);
                    $n++;
                }
            }
            return $n;
        }

        public function exists(string $key): int
        {
            return array_key_exists($key, $this->data) ? 1 : 0;
        }

        public function hgetall(string $key): array
        {
            return $this->data[$key] ?? [];
        }

        public function hget(string $key, string $field)
        {
            return $this->data[$key][$field] ?? false;
        }

        public function hset(string $key, string $field, $value): int
        {
            if ($this->keep) {
                $this->data[$key][$field] = $value;
            }
            return 1;
        }

        public function hexists(string $key, string $field): bool
        {
            return isset($this->data[$key][$field]);
        }

        public function hdel(string $key, string ...$fields): int
        {
            foreach ($fields as $field) {
                unset($this->data[$key][$field]);
            }
            return count($fields);
        }

        public function rPush(string $key, ...$values): int
        {
            if ($this->keep) {
                foreach ($values as $value) {
                    $this->data[$key][] = $value;
                }
            }
            return count($this->data[$key] ?? []);
        }

        public function lRange(string $key, int $start, int $end): array
        {
            $list = $this->data[$key] ?? [];
            return array_slice($list, $start, $end < 0 ? null : $end - $start + 1);
        }

        public function lRem(string $key, $value, int $count = 0): int
        {
            $list = $this->data[$key] ?? [];
            $kept = array_values(array_filter($list, static fn($v) => $v !== $value));
            $this->data[$key] = $kept;
            return count($list) - count($kept);
        }

        public function keys(string $pattern): array
        {
            return array_values(array_filter(array_keys($this->data), static fn($k) => fnmatch($pattern, $k)));
        }
    }

}

namespace FeatpkgHarness {
    /** MikoPBX's main database ('db'): PDO on the real SQLite file, with Phalcon's nested transactions. */
    class Database
    {
        private \PDO $pdo;
        private int $depth = 0;
        private ?object $eventsManager = null;

        public function __construct(string $path)
        {
            $this->pdo = new \PDO("sqlite:$path");
            $this->pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
            // Phalcon hands the models strings, as MikoPBX's typed properties expect.
            $this->pdo->setAttribute(\PDO::ATTR_STRINGIFY_FETCHES, true);
            // MikoPBX's connection waits for a busy database (Phalcon's sqlite adapter: busy timeout).
            $this->pdo->setAttribute(\PDO::ATTR_TIMEOUT, 10);
        }

        public function pdo(): \PDO
        {
            return $this->pdo;
        }

        /** Modules' own databases join the main one's transactions through it (none here: our module has no Models/). */
        public function getEventsManager(): ?object
        {
            return $this->eventsManager;
        }

        public function setEventsManager(object $manager): void
        {
            $this->eventsManager = $manager;
        }

        public function begin(bool $nesting = true): bool
        {
            if ($this->depth === 0) {
                $this->pdo->beginTransaction();
            } else {
                $this->pdo->exec("SAVEPOINT level_{$this->depth}");
            }
            $this->depth++;
            return true;
        }

        public function commit(bool $nesting = true): bool
        {
            if ($this->depth === 0) {
                return false;
            }
            $this->depth--;
            if ($this->depth === 0) {
                $this->pdo->commit();
            } else {
                $this->pdo->exec("RELEASE SAVEPOINT level_{$this->depth}");
            }
            return true;
        }

        public function rollback(bool $nesting = true): bool
        {
            if ($this->depth === 0) {
                return false;
            }
            $this->depth--;
            if ($this->depth === 0) {
                $this->pdo->rollBack();
            } else {
                $this->pdo->exec("ROLLBACK TO SAVEPOINT level_{$this->depth}");
            }
            return true;
        }

        public function isUnderTransaction(): bool
        {
            return $this->depth > 0;
        }
    }

    /** The managed (model) cache: always a miss (header, 3). */
    class ManagedCache
    {
        public function get(string $key, $default = null)
        {
            return $default;
        }

        public function set(string $key, $value, $ttl = null): bool
        {
            return true;
        }

        public function delete(string $key): bool
        {
            return true;
        }

        public function clear(): bool
        {
            return true;
        }

        public function getAdapter(): \Redis
        {
            return new \Redis(false);
        }
    }

    /** Syslog (header, 4): one line per message, in the harness's log file. */
    class Logger
    {
        public function __construct(private string $file)
        {
        }

        public function log($level, string $message): void
        {
            file_put_contents($this->file, "[$level] $message\n", FILE_APPEND);
        }

        public function __call(string $name, array $arguments)
        {
            $this->log($name, (string) ($arguments[0] ?? ''));
        }
    }

    /** Translation (header, 4): the key, with its parameters, so tests can tell messages apart. */
    class Translation
    {
        public function _(string $key, array $parameters = []): string
        {
            return $parameters === [] ? $key : $key . ' ' . json_encode($parameters, JSON_UNESCAPED_SLASHES);
        }

        public function t(string $key, array $parameters = []): string
        {
            return $this->_($key, $parameters);
        }
    }

    /** The mutex (header, 4): the harness runs one MikoPBX process at a time per step. */
    class Mutex
    {
        public function synchronized(string $key, callable $callback, int $wait = 10, int $ttl = 30)
        {
            return $callback();
        }
    }

    /** The event bus to the browser (header, 4): what would have been pushed, kept for the tests. */
    class EventBus
    {
        public function __construct(private string $file)
        {
        }

        public function publish(string $channel, $message): void
        {
            file_put_contents($this->file, json_encode([$channel, $message], JSON_UNESCAPED_SLASHES) . "\n", FILE_APPEND);
        }
    }

    /** The license service (header, 4). */
    class License
    {
        public function featureAvailable($feature): array
        {
            return ['success' => true];
        }

        public function addtrial($product): void
        {
        }
    }

    /** Models' metadata cache: nothing to reset. */
    class ModelsMetadata
    {
        public function reset(): void
        {
        }
    }
}
